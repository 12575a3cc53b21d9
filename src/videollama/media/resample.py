"""Band-limited (windowed-sinc, Hann window) resampling, numerically equivalent to
``torchaudio.functional.resample`` with its defaults (sinc_interp_hann, lowpass_filter_width=6, rolloff=0.99).

Written by hand because torchaudio cannot be installed beside torch 2.13 (DEPS.md §9). Algorithm: reduce the
rates by their gcd to ``orig``/``new``; output sample ``j`` of block ``b = j // new``, phase ``q = j % new`` is the
dot product of input samples ``b*orig - width .. b*orig + orig + width`` with a Hann-windowed sinc centred at
``-q / new`` (in input-sample units), cut off at ``rolloff * min(orig, new)`` and ``lowpass_filter_width`` zero
crossings. All blocks share the same ``new`` filters, so the whole thing is one strided ``conv1d``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

LOWPASS_FILTER_WIDTH = 6
ROLLOFF = 0.99


@lru_cache(maxsize=16)
def _kernel(orig: int, new: int, lowpass_filter_width: int, rolloff: float) -> tuple[torch.Tensor, int]:
    """Filters ``(new, 1, 2*width + orig)`` float32 and the one-sided support ``width`` in input samples."""
    cutoff = min(orig, new) * rolloff  # in units of the reduced rates
    width = math.ceil(lowpass_filter_width * orig / cutoff)
    dtype = torch.float32  # torchaudio builds the kernel in the waveform dtype; float32 keeps us bit-close
    offsets = torch.arange(-width, width + orig, dtype=dtype)[None, None] / orig  # input taps, input-sample units
    phases = torch.arange(0, -new, -1, dtype=dtype)[:, None, None] / new  # output phase shifts
    x = (phases + offsets) * cutoff  # distance in cutoff-rate samples
    x = x.clamp(-lowpass_filter_width, lowpass_filter_width)
    hann = torch.cos(x * math.pi / lowpass_filter_width / 2) ** 2
    x = x * math.pi
    sinc = torch.where(x == 0, torch.tensor(1.0, dtype=dtype), torch.sin(x) / x)
    filters = sinc * (hann * (cutoff / orig))
    return filters, width


def _reduced(orig_freq: int, new_freq: int) -> tuple[int, int]:
    g = math.gcd(int(orig_freq), int(new_freq))
    return int(orig_freq) // g, int(new_freq) // g


def output_length(n_in: int, orig_freq: int, new_freq: int) -> int:
    """Number of output samples for ``n_in`` input samples: ``ceil(new * n / orig)``."""
    orig, new = _reduced(orig_freq, new_freq)
    return -(-new * n_in // orig)


def resample(
    waveform: torch.Tensor,
    orig_freq: int,
    new_freq: int,
    lowpass_filter_width: int = LOWPASS_FILTER_WIDTH,
    rolloff: float = ROLLOFF,
) -> torch.Tensor:
    """Resample ``(..., N)`` float32 from ``orig_freq`` to ``new_freq`` Hz; returns ``(..., ceil(N*new/orig))``."""
    if orig_freq <= 0 or new_freq <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_freq} -> {new_freq}")
    if orig_freq == new_freq:
        return waveform
    n = waveform.shape[-1]
    return resample_range(waveform, orig_freq, new_freq, 0, output_length(n, orig_freq, new_freq), lowpass_filter_width, rolloff)


def resample_range(
    waveform: torch.Tensor,
    orig_freq: int,
    new_freq: int,
    start: int,
    stop: int,
    lowpass_filter_width: int = LOWPASS_FILTER_WIDTH,
    rolloff: float = ROLLOFF,
) -> torch.Tensor:
    """Output samples ``[start, stop)`` of :func:`resample` without computing the others.

    Each output sample depends only on a fixed window of input samples (zero outside the signal), so a slice of
    the output equals the same slice of the full resample up to float summation order (~1e-7).
    """
    orig, new = _reduced(orig_freq, new_freq)
    if orig == new:
        return waveform[..., start:stop]
    filters, width = _kernel(orig, new, lowpass_filter_width, float(rolloff))
    shape = waveform.shape
    x = waveform.reshape(-1, shape[-1])
    n = x.shape[-1]
    start, stop = max(start, 0), min(stop, output_length(n, orig_freq, new_freq))
    if stop <= start:
        return x.new_zeros(*shape[:-1], 0)
    b0, b1 = start // new, (stop - 1) // new  # first and last block
    lo = b0 * orig - width  # first input sample needed (may be < 0: zero padding)
    hi = b1 * orig - width + filters.shape[-1]  # one past the last input sample needed
    seg = x[:, max(lo, 0) : min(hi, n)]
    seg = torch.nn.functional.pad(seg, (max(0, -lo), max(0, hi - n)))
    out = torch.nn.functional.conv1d(seg[:, None], filters.to(seg.dtype), stride=orig)  # (B, new, blocks)
    out = out.transpose(1, 2).reshape(x.shape[0], -1)
    out = out[:, start - b0 * new : stop - b0 * new]
    return out.reshape(*shape[:-1], out.shape[-1])
