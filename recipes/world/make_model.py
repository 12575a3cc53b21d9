"""Write the learning-proof model folder: `python recipes/world/make_model.py OUT [--seed 0]` (model.yaml).

The frozen encoders (EVA-style ViT + image Q-Former, ImageBind-style audio trunk) are seeded *random* fixed
feature extractors. With the official N(0, 0.02) initialisation a random image Q-Former maps every video to
almost the same features (differences ~0.2% of their size: the cross-attention into the frames is too weak to
leave a trace), so nothing downstream can learn what is on screen. Their matrices are therefore re-drawn with a
signal-preserving scale, N(0, 1/fan_in) per output unit (biases 0; position embeddings, CLS and query tokens
N(0, 1)), which keeps the input-dependent signal at order 1 through the layers. The same holds for the
*trainable* video / audio Q-Formers (with the official init, training found the text-only answer priors and
never used the media: docs/world.md, runs 1-2), so they get the same re-draw, and the frame / audio position
tables N(0, 0.5) (official 0.02: a 2% temporal signal next to unit-scale features). The projections and the LLM
keep the official initialisation.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from videollama.config import VideoLLaMAConfig

HERE = Path(__file__).resolve().parent
FROZEN_ENCODERS = ("vision", "image_qformer", "audio_encoder")
# Trainable, but with the official init their outputs are the same for every input too (the queries dominate),
# and training settles on the text-only answer priors before it grows the cross-attention: same re-draw.
SIGNAL_INIT = FROZEN_ENCODERS + ("video_qformer", "audio_qformer")
POSITION_TABLES = ("frame_position_embedding", "audio_position_embedding")
POSITION_STD = 0.5
UNIT_SCALE = ("pos", "cls")
QUERY_STD = 0.02  # queries small: the Q-Former outputs are then driven by what they attend to, not by the queries


@torch.no_grad()
def informative_init(model: torch.nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    for module_name in POSITION_TABLES:
        module = getattr(model, module_name, None)
        if module is not None:
            module.weight.normal_(0, POSITION_STD, generator=gen)
    for module_name in SIGNAL_INIT:
        module = getattr(model, module_name, None)
        if module is None:
            continue
        for name, p in module.named_parameters():
            low = name.lower()
            if "query_tokens" in low:
                p.normal_(0, QUERY_STD, generator=gen)
            elif any(k in low for k in UNIT_SCALE):
                p.normal_(0, 1.0, generator=gen)
            elif p.dim() >= 2:
                p.normal_(0, 1 / math.sqrt(p[0].numel()), generator=gen)
            elif low.endswith("bias"):
                p.zero_()


def make_world_model(out: str | Path, seed: int = 0, config: str | Path = HERE / "model.yaml") -> Path:
    from videollama.checkpoint.folder import LLM_DIR
    from videollama.model.videollama import VideoLLaMA
    from videollama.tiny import train_tiny_tokenizer

    cfg = VideoLLaMAConfig.from_yaml(Path(config))
    torch.manual_seed(seed)
    model = VideoLLaMA(cfg).eval()
    informative_init(model, seed)
    model.save_pretrained(out, overwrite=True)
    train_tiny_tokenizer(Path(out) / LLM_DIR)
    return Path(out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", default=str(HERE / "model.yaml"))
    a = ap.parse_args()
    print(make_world_model(a.out, a.seed, a.config))
