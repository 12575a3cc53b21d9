"""Kaldi-compatible log-mel filterbank (the ``torchaudio.compliance.kaldi.fbank`` settings ImageBind uses).

Hand-written because torchaudio is unusable beside torch 2.13 and kaldi-native-fbank refuses 128 bins at a
512-point FFT (DEPS.md §1, §5). Recipe (Kaldi defaults, ``snip_edges=True``): 25 ms frames every 10 ms; per-frame
DC removal; pre-emphasis 0.97 (first sample uses itself as predecessor); symmetric Hann window
(``torch.hann_window(periodic=False)``); zero-pad to 512; power spectrum; triangular filters equally spaced on the
mel scale ``1127 ln(1 + f/700)`` between 20 Hz and Nyquist, built in the mel domain on the FFT bin centres with
the Nyquist bin left out; natural log floored at float32 epsilon.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch


def _mel(freq: float) -> float:
    return 1127.0 * math.log(1.0 + freq / 700.0)


@lru_cache(maxsize=8)
def mel_banks(num_bins: int, n_fft: int, sample_rate: float, low_freq: float, high_freq: float) -> torch.Tensor:
    """Triangular mel filters ``(num_bins, n_fft // 2 + 1)`` float32, last (Nyquist) column zero."""
    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:
        high_freq += nyquist
    if not (0.0 <= low_freq < high_freq <= nyquist):
        raise ValueError(f"bad mel range {low_freq}..{high_freq} Hz for sample rate {sample_rate}")
    lo, hi = _mel(low_freq), _mel(high_freq)
    step = (hi - lo) / (num_bins + 1)
    b = torch.arange(num_bins).unsqueeze(1)
    left = lo + b * step
    centre = lo + (b + 1.0) * step
    right = lo + (b + 2.0) * step
    bin_mel = 1127.0 * (1.0 + (sample_rate / n_fft * torch.arange(n_fft // 2)) / 700.0).log()
    rising = (bin_mel - left) / (centre - left)
    falling = (right - bin_mel) / (right - centre)
    tri = torch.clamp(torch.minimum(rising, falling), min=0.0)
    return torch.nn.functional.pad(tri, (0, 1))  # Nyquist bin gets weight 0


def fbank(
    waveform: torch.Tensor,
    sample_rate: int = 16000,
    num_mel_bins: int = 128,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
    preemphasis: float = 0.97,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
) -> torch.Tensor:
    """Log-mel energies ``(frames, num_mel_bins)`` of a 1-D float32 waveform (``frames = 1 + (N - win) // shift``).

    Raises ValueError when the waveform is shorter than one window (Kaldi asserts the same).
    """
    if waveform.ndim != 1:
        raise ValueError(f"fbank expects a 1-D waveform, got shape {tuple(waveform.shape)}")
    win = int(sample_rate * frame_length_ms * 0.001)
    shift = int(sample_rate * frame_shift_ms * 0.001)
    n = waveform.shape[0]
    if n < win or win < 2:
        raise ValueError(f"waveform of {n} samples is shorter than one {win}-sample analysis window")
    n_fft = 1 << (win - 1).bit_length()
    n_frames = 1 + (n - win) // shift
    x = waveform.contiguous().as_strided((n_frames, win), (shift, 1))
    x = x - x.mean(dim=1, keepdim=True)
    prev = torch.cat([x[:, :1], x[:, :-1]], dim=1)
    x = x - preemphasis * prev
    x = x * torch.hann_window(win, periodic=False, dtype=x.dtype)
    x = torch.nn.functional.pad(x, (0, n_fft - win))
    power = torch.fft.rfft(x).abs().pow(2.0)
    banks = mel_banks(num_mel_bins, n_fft, float(sample_rate), float(low_freq), float(high_freq)).to(power.dtype)
    energies = torch.mm(power, banks.T)
    eps = torch.tensor(torch.finfo(torch.float32).eps, dtype=energies.dtype)
    return torch.maximum(energies, eps).log()
