"""Generation from `inputs_embeds` with the official stopping rule.

transformers' `generate` does the decoding; we only add the official stop check, which looks at the
tail of row 0 for any of the template's stop sequences (e.g. '###' = [835] or [2277, 29937] for Vicuna).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import StoppingCriteria, StoppingCriteriaList


class StopOnSequences(StoppingCriteria):
    """Stop when the generated ids of row 0 end with one of `stop_sequences` (official: row 0 only)."""

    def __init__(self, stop_sequences: Sequence[Sequence[int]]) -> None:
        self.stops = [torch.tensor(list(s), dtype=torch.long) for s in stop_sequences if len(s)]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> bool:
        row = input_ids[0]
        for stop in self.stops:
            n = stop.numel()
            if row.numel() >= n and torch.equal(row[-n:].cpu(), stop):
                return True
        return False


def generate_ids(
    llm: torch.nn.Module,
    inputs_embeds: torch.Tensor,
    stop_sequences: Sequence[Sequence[int]] = (),
    attention_mask: torch.Tensor | None = None,
    **generate_kwargs,
) -> torch.Tensor:
    """Run `llm.generate(inputs_embeds=...)` and return only the new token ids (B, n)."""
    criteria = StoppingCriteriaList([StopOnSequences(stop_sequences)]) if stop_sequences else None
    if attention_mask is None:
        attention_mask = torch.ones(inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device)
    return llm.generate(
        inputs_embeds=inputs_embeds, attention_mask=attention_mask, stopping_criteria=criteria, **generate_kwargs
    )
