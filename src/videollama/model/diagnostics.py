"""Diagnostics of what the Q-Former tokens carry: are the query outputs distinct, or one token repeated?

A Q-Former's learned queries are meant to read different things from the frames. In the learning proof on the
synthetic world, the trained video Q-Former's 32 outputs came out as one token repeated 32 times
(docs/world.md, "Session 12"), which a probe that attends over the tokens cannot see through, and which limits
what reaches the LLM to one token's worth. `shared_token_fraction` measures that collapse; `qformer_token_sharing`
reports it for a model's image and video Q-Formers on real videos. Written by hand: it is a few lines of variance
bookkeeping, no library ships the measure.
"""

from __future__ import annotations

import os
from typing import Sequence

import torch


def shared_token_fraction(tokens: torch.Tensor) -> float:
    """Fraction of the across-input variance of (V, Q, H) tokens (V inputs, Q tokens each) that all Q tokens of an
    input share: 1.0 when the Q tokens are one token repeated, about 1/Q when they vary independently. Each token's
    mean over the V inputs is removed first, so constant differences between the queries do not count as diversity."""
    if tokens.dim() != 3 or tokens.shape[0] < 2:
        raise ValueError(f"tokens must be (V >= 2 inputs, Q, H), got {tuple(tokens.shape)}")
    tokens = tokens.double()
    dev = tokens - tokens.mean(0)
    total = dev.pow(2).sum()
    if total == 0:
        raise ValueError("tokens do not vary across the inputs: the fraction is undefined")
    own = (dev - dev.mean(1, keepdim=True)).pow(2).sum()
    return float(1 - own / total)


@torch.no_grad()
def qformer_token_sharing(model, videos: Sequence[str | os.PathLike[str]], n_frames: int = 8) -> dict[str, float | int]:
    """`shared_token_fraction` of a `VideoLLaMA`'s image Q-Former tokens (within each frame) and video Q-Former
    outputs (within each video), over `videos` sampled as at inference (uniform `n_frames`)."""
    from videollama.media.video import load_video

    frame_tokens, video_tokens = [], []
    for path in videos:
        clip = load_video(path, n_frames=n_frames)
        feats = model.frame_features(clip.tensor.to(device=model.device, dtype=model.dtype))  # (1, T, Q, Hq)
        video_tokens.append(model.video_from_frame_features(feats).intermediates["video_qformer_out"][0].float())
        frame_tokens.append(feats[0].float())
    frames = torch.cat(frame_tokens)  # (sum T, Q, Hq): each frame one input
    return {"videos": len(video_tokens), "image_qformer_per_frame": round(shared_token_fraction(frames), 3),
            "video_qformer": round(shared_token_fraction(torch.stack(video_tokens)), 3)}
