"""Frame-index samplers (pure functions: no I/O, no decoding).

All samplers return sorted ``int`` frame indices into a video of ``vlen`` frames, where frame ``i``
is the ``i``-th frame in presentation order (decord's numbering).
"""

from __future__ import annotations

import random as _random
from typing import Literal, Sequence

import numpy as np

SamplingPolicy = Literal["uniform", "random", "headtail", "fps", "range"]
SAMPLING_POLICIES: tuple[str, ...] = ("uniform", "random", "headtail", "fps", "range")


def uniform_indices(vlen: int, n_frames: int) -> list[int]:
    """Official 'uniform' rule: ``np.arange(0, vlen, vlen / n).astype(int)`` with ``n = min(n_frames, vlen)``.

    The first frame is always taken and the last one never is (the grid is start-aligned).
    """
    if vlen <= 0 or n_frames <= 0:
        return []
    n = min(int(n_frames), int(vlen))
    return [int(i) for i in np.arange(0, vlen, vlen / n).astype(int)]


def _as_rng(rng: _random.Random | int | None) -> _random.Random:
    return rng if isinstance(rng, _random.Random) else _random.Random(rng)


def headtail_indices(vlen: int, n_frames: int, rng: _random.Random | int | None = None) -> list[int]:
    """Official 'headtail' rule (WebVid pretraining): ``n//2`` distinct sorted random indices from the first half,
    then ``n//2`` from the second half. ``n = min(n_frames, vlen)``; an odd ``n`` gives ``n - 1`` frames, as official.
    Each half is clamped to its size so short videos do not raise (official would raise ValueError).
    """
    if vlen <= 0 or n_frames <= 0:
        return []
    r = _as_rng(rng)
    n = min(int(n_frames), int(vlen))
    half = vlen // 2
    head = sorted(r.sample(range(half), min(n // 2, half)))
    tail = sorted(r.sample(range(half, vlen), min(n // 2, vlen - half)))
    return head + tail


def random_indices(vlen: int, n_frames: int, rng: _random.Random | int | None = None) -> list[int]:
    """Training-style random sampling: one random frame inside each of ``n`` equal segments (sorted, distinct)."""
    if vlen <= 0 or n_frames <= 0:
        return []
    r = _as_rng(rng)
    n = min(int(n_frames), int(vlen))
    edges = np.linspace(0, vlen, n + 1)
    out = []
    for k in range(n):
        lo, hi = int(np.ceil(edges[k])), int(np.ceil(edges[k + 1]))
        lo = max(lo, out[-1] + 1 if out else 0)
        hi = max(hi, lo + 1)
        out.append(min(r.randrange(lo, hi), vlen - 1))
    return out


def _frame_at_times(frame_times: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Index of the frame on screen at each time (last frame whose presentation time is <= t)."""
    idx = np.searchsorted(frame_times, times + 1e-9, side="right") - 1
    return np.clip(idx, 0, len(frame_times) - 1)


def fps_indices(frame_times: Sequence[float], target_fps: float, max_frames: int | None = None) -> list[int]:
    """Frames at a fixed rate: the frame shown at ``t = k / target_fps`` (true presentation times, so VFR-safe).

    ``frame_times`` are the presentation times in seconds of all frames, sorted, starting at 0.
    When ``max_frames`` is given and exceeded, the result is thinned with the uniform rule.
    """
    if target_fps <= 0:
        raise ValueError(f"target_fps must be > 0, got {target_fps}")
    ft = np.asarray(frame_times, dtype=np.float64)
    if ft.size == 0:
        return []
    end = float(ft[-1])
    times = np.arange(0.0, end + 1e-9, 1.0 / target_fps)
    idx = np.unique(_frame_at_times(ft, times)).tolist()
    if max_frames is not None and len(idx) > max_frames:
        idx = [idx[i] for i in uniform_indices(len(idx), max_frames)]
    return [int(i) for i in idx]


def range_indices(
    frame_times: Sequence[float], start_s: float | None, end_s: float | None, n_frames: int
) -> list[int]:
    """Uniform (official rule) sampling restricted to frames presented in ``[start_s, end_s)`` seconds."""
    ft = np.asarray(frame_times, dtype=np.float64)
    if ft.size == 0:
        return []
    lo = 0 if start_s is None else int(np.searchsorted(ft, start_s - 1e-9, side="left"))
    hi = len(ft) if end_s is None else int(np.searchsorted(ft, end_s - 1e-9, side="left"))
    if start_s is not None and end_s is not None and end_s <= start_s:
        raise ValueError(f"empty time range: start {start_s} s >= end {end_s} s")
    if hi <= lo:
        # The range falls between two frames (or past the end): take the frame on screen at start.
        return [int(_frame_at_times(ft, np.array([start_s or 0.0]))[0])]
    return [lo + i for i in uniform_indices(hi - lo, n_frames)]


def timestamp_message(indices: Sequence[int], fps: float) -> str:
    """Official sentence: each index ``i`` written as ``str(round(i / fps, 1))``; note the trailing space."""
    secs = ", ".join(str(round(int(i) / fps, 1)) for i in indices)
    return f"The video contains {len(indices)} frames sampled at {secs} seconds. "
