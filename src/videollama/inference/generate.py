"""Generation from `inputs_embeds` with the official stopping rule.

transformers' `generate` does the decoding; we only add the official stop check, which looks at the
tail of row 0 for any of the template's stop sequences (e.g. '###' = [835] or [2277, 29937] for Vicuna).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch
from transformers import StoppingCriteria, StoppingCriteriaList


class StopOnSequences(StoppingCriteria):
    """Stop when generated ids end with one of `stop_sequences`.

    Official behaviour (`per_row=False`): only row 0 is looked at and the whole batch stops with it.
    `per_row=True` (our batched inference) marks each row done on its own.
    """

    def __init__(self, stop_sequences: Sequence[Sequence[int]], per_row: bool = False) -> None:
        self.stops = [torch.tensor(list(s), dtype=torch.long) for s in stop_sequences if len(s)]
        self.per_row = per_row

    def _row_done(self, row: torch.Tensor) -> bool:
        for stop in self.stops:
            n = stop.numel()
            if row.numel() >= n and torch.equal(row[-n:].cpu(), stop):
                return True
        return False

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        if self.per_row:
            done = [self._row_done(row) for row in input_ids]
        else:
            done = [self._row_done(input_ids[0])] * input_ids.shape[0]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class StopOnEvent(StoppingCriteria):
    """Stop every row once `event` is set (a client disconnected, the user pressed Ctrl-C)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def generate_ids(
    llm: torch.nn.Module,
    inputs_embeds: torch.Tensor,
    stop_sequences: Sequence[Sequence[int]] = (),
    attention_mask: torch.Tensor | None = None,
    per_row: bool = False,
    stop_event: threading.Event | None = None,
    **generate_kwargs,
) -> torch.Tensor:
    """Run `llm.generate(inputs_embeds=...)` and return only the new token ids (B, n)."""
    criteria = StoppingCriteriaList()
    if stop_sequences:
        criteria.append(StopOnSequences(stop_sequences, per_row))
    if stop_event is not None:
        criteria.append(StopOnEvent(stop_event))
    if attention_mask is None:
        attention_mask = torch.ones(inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device)
    return llm.generate(
        inputs_embeds=inputs_embeds, attention_mask=attention_mask, stopping_criteria=criteria or None, **generate_kwargs
    )
