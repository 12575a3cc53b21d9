"""A small in-test dataset in the documented batch format (objective.py), resumable and rank-sharded.

Global batch k (size batch_size * world_size) is a seeded random pick of sample indices; rank r takes
its slice. So one process with batch 2B sees exactly the union of what two ranks with batch B see.
Even steps are caption batches, odd steps instruction batches (one "dataset" per step).
"""

from __future__ import annotations

from typing import Any

import torch

N_SAMPLES = 8
TEXT_LEN = 10


class SyntheticBatches:
    def __init__(self, branch: str, batch_size: int, rank: int, world: int, n_frames: int, feat_shape: tuple[int, int],
                 media_tokens: int, media_id: int, seed: int = 0, vocab: int = 500) -> None:
        g = torch.Generator().manual_seed(1234)
        self.branch, self.batch_size, self.rank, self.world, self.seed = branch, batch_size, rank, world, seed
        shape = (N_SAMPLES, n_frames, *feat_shape)
        self.media = torch.randn(shape, generator=g)
        self.text = torch.randint(3, vocab, (N_SAMPLES, TEXT_LEN), generator=g)
        self.media_tokens, self.media_id = media_tokens, media_id
        self.step = 0

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, Any]:
        k = self.step
        self.step += 1
        g = torch.Generator().manual_seed(self.seed * 100003 + k)
        glob = torch.randint(0, N_SAMPLES, (self.batch_size * self.world,), generator=g)
        idx = glob[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
        key = "frame_features" if self.branch == "vl" else "imagebind_embeds"
        batch: dict[str, Any] = {key: self.media[idx].clone()}
        text = self.text[idx]
        if k % 2 == 0:
            batch.update(task="caption", text_ids=text, text_mask=torch.ones_like(text))
        else:
            b = len(idx)
            prompt = torch.full((b, 2), 7)
            media = torch.full((b, self.media_tokens), self.media_id)
            ids = torch.cat([torch.ones(b, 1, dtype=torch.long), prompt, media, text], dim=1)
            labels = ids.clone()
            labels[:, : 3 + self.media_tokens] = -100
            batch.update(task="instruct", input_ids=ids, labels=labels, attention_mask=torch.ones_like(ids))
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])


def make_batches(recipe, tokenizer, model_config, rank: int, world: int) -> SyntheticBatches:
    """The engine's DataFactory signature."""
    if recipe.branch == "vl":
        feat = (model_config.image_qformer.num_query_tokens, model_config.image_qformer.hidden)
        n_media = model_config.video_qformer.num_query_tokens
    else:
        feat = (model_config.audio_encoder.out_dim,)
        n_media = model_config.audio_qformer.num_query_tokens
    return SyntheticBatches(recipe.branch, recipe.optim.batch_size, rank, world, recipe.datasets[0].n_frames, feat,
                            n_media, tokenizer.image_token_id, seed=recipe.seed)
