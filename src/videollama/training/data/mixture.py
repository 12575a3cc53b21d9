"""The dataset mixture as a pure function of (seed, step, rank, world_size) - exact resume for free.

Official loader (SPEC §5.5): at every step one dataset is chosen with probability ∝ `sample_ratio`, and the
whole batch comes from it; each dataset is read through a shuffling DistributedSampler with drop_last.

Here:
* dataset of step s: `torch.multinomial(weights, 1024, replacement=True, generator=manual_seed(mix(seed, s // 1024)))`
  at position s % 1024. The choice does NOT depend on the rank, so all ranks run the same task at every step
  (same graph under DDP); the official ranks draw independently, which only changes which ranks mix tasks.
* per dataset an infinite stream: epoch e is `randperm(len, generator=manual_seed(mix(seed, name, e)))`; rank r of
  world W takes `perm[r : (len // W) * W : W]` (DistributedSampler with drop_last: disjoint across ranks, the
  tail of len % W samples is dropped each epoch);
* the batch of step s takes the next `batch_size` positions of its dataset's stream, i.e. positions
  `[k * B, (k + 1) * B)` where k = how many earlier steps chose that dataset (computed by replaying the choices:
  one multinomial per 1024 steps, memoised).
* length grouping (optional, not official; Hugging Face Trainer's `group_by_length`): given each sample's text
  length, every window of `GROUP_WINDOW` batches of an epoch's per-rank permutation is sorted by length and cut
  into batches, whose order inside the window is then shuffled (seeded). A batch then holds samples of about the
  same length, so it is padded far less; which samples an epoch visits does not change.
"""

from __future__ import annotations

from hashlib import blake2b

import torch

__all__ = ["MixturePlan"]

CHUNK = 1024
#: Length grouping: samples are sorted by length inside windows of this many batches (Hugging Face's megabatch).
GROUP_WINDOW = 50


def _mix(*parts) -> int:
    h = blake2b("|".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


class MixturePlan:
    """Which samples (dataset, index, epoch) make the batch of each step on one rank."""

    def __init__(self, names: list[str], lengths: list[int], weights: list[float], batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1, sample_lengths: list[list[int] | None] | None = None):
        """`sample_lengths[d]`: per-sample text lengths of dataset d for length grouping (None: not grouped)."""
        if not (0 <= rank < world_size):
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        if len(names) != len(lengths) or len(names) != len(weights):
            raise ValueError("names, lengths and weights must have the same length")
        w = torch.tensor([float(x) for x in weights], dtype=torch.float64)
        if (w < 0).any() or not (w > 0).any():
            raise ValueError(f"sample ratios must be >= 0 with at least one > 0, got {weights}")
        for n, length, wt in zip(names, lengths, weights):
            if wt > 0 and length // world_size == 0:
                raise ValueError(f"dataset '{n}' has {length} usable samples, fewer than world_size={world_size}")
        self.names, self.lengths = list(names), [int(x) for x in lengths]
        self.weights = w
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.sample_lengths = list(sample_lengths) if sample_lengths is not None else [None] * len(names)
        for n, length, sl in zip(names, lengths, self.sample_lengths):
            if sl is not None and len(sl) != length:
                raise ValueError(f"dataset '{n}': {len(sl)} sample lengths for {length} samples")
        self._chunks: list[torch.Tensor] = []
        self._counts: list[torch.Tensor] = [torch.zeros(len(names), dtype=torch.long)]  # before each chunk
        self._perm_cache: dict[tuple[int, int], torch.Tensor] = {}

    def _chunk(self, c: int) -> torch.Tensor:
        while len(self._chunks) <= c:
            k = len(self._chunks)
            g = torch.Generator().manual_seed(_mix(self.seed, "mixture", k))
            ch = torch.multinomial(self.weights, CHUNK, replacement=True, generator=g)
            self._chunks.append(ch)
            self._counts.append(self._counts[-1] + torch.bincount(ch, minlength=len(self.names)))
        return self._chunks[c]

    def dataset_at(self, step: int) -> int:
        """Index (into `names`) of the dataset the batch of `step` comes from."""
        return int(self._chunk(step // CHUNK)[step % CHUNK])

    def batches_before(self, step: int, d: int) -> int:
        """How many of steps [0, step) chose dataset `d`."""
        c, off = divmod(step, CHUNK)
        ch = self._chunk(c)
        return int(self._counts[c][d]) + int((ch[:off] == d).sum())

    def per_rank(self, d: int) -> int:
        return self.lengths[d] // self.world_size

    def _perm(self, d: int, epoch: int) -> torch.Tensor:
        key = (d, epoch)
        if key not in self._perm_cache:
            if len(self._perm_cache) > 2 * len(self.names):
                self._perm_cache.clear()
            g = torch.Generator().manual_seed(_mix(self.seed, self.names[d], "epoch", epoch))
            perm = torch.randperm(self.lengths[d], generator=g)
            perm = perm[self.rank: self.per_rank(d) * self.world_size: self.world_size]
            if self.sample_lengths[d] is not None:
                perm = self._grouped(d, epoch, perm)
            self._perm_cache[key] = perm
        return self._perm_cache[key]

    def _grouped(self, d: int, epoch: int, perm: torch.Tensor) -> torch.Tensor:
        """`perm` with every window of GROUP_WINDOW batches sorted by sample length, cut into batches, and those
        batches shuffled. Windows start on the stream's batch boundaries (an epoch need not start on one)."""
        b = self.batch_size
        head = min((-epoch * len(perm)) % b, len(perm))  # these first samples end a batch begun the epoch before
        lengths = torch.as_tensor(self.sample_lengths[d], dtype=torch.long)
        g = torch.Generator().manual_seed(_mix(self.seed, self.names[d], "group", epoch))
        out = [perm[:head]]
        window = GROUP_WINDOW * b
        for start in range(head, len(perm), window):
            chunk = perm[start:start + window]
            chunk = chunk[torch.argsort(lengths[chunk], descending=True, stable=True)]
            batches = list(chunk.split(b))
            tail = [batches.pop()] if len(batches[-1]) < b else []  # a short last batch stays last (alignment)
            out += [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()] + tail
        return torch.cat(out)

    def sample_at(self, d: int, position: int) -> tuple[int, int]:
        """(index, epoch) of the `position`-th sample of dataset `d`'s stream on this rank."""
        epoch, off = divmod(position, self.per_rank(d))
        return int(self._perm(d, epoch)[off]), epoch

    def batch_at(self, step: int) -> tuple[int, list[tuple[int, int]]]:
        """(dataset, [(index, epoch)] * batch_size) of `step` on this rank."""
        d = self.dataset_at(step)
        start = self.batches_before(step, d) * self.batch_size
        return d, [self.sample_at(d, p) for p in range(start, start + self.batch_size)]
