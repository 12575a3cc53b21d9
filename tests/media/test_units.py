"""Unit tests of the pure pieces: samplers, clip timing, resampler, fbank, in-place clip semantics, CLI."""

from __future__ import annotations

import argparse
import random
from fractions import Fraction

import numpy as np
import pytest
import torch

from tests.media.conftest import make_video
from videollama.media import sampling
from videollama.media.audio import clip_sample_bounds, clip_timepoints, clips_from_waveform
from videollama.media.fbank import fbank, mel_banks
from videollama.media.resample import output_length, resample, resample_range


def test_uniform_matches_official_rule():
    for vlen in list(range(1, 300)) + [12345, 200000]:
        for n in (1, 5, 8, 16, 64):
            expected = np.arange(0, vlen, vlen / min(n, vlen)).astype(int).tolist()
            assert sampling.uniform_indices(vlen, n) == expected
    assert sampling.uniform_indices(15, 8) == [0, 1, 3, 5, 7, 9, 11, 13]
    assert sampling.uniform_indices(0, 8) == []


def test_headtail_and_random_are_sorted_distinct_and_seeded():
    for vlen in (2, 9, 100):
        ht = sampling.headtail_indices(vlen, 8, rng=1)
        assert ht == sorted(set(ht)) and all(0 <= i < vlen for i in ht)
        assert ht == sampling.headtail_indices(vlen, 8, rng=random.Random(1))
        r = sampling.random_indices(vlen, 8, rng=3)
        assert r == sorted(set(r)) and len(r) == min(8, vlen) and all(0 <= i < vlen for i in r)
    ht = sampling.headtail_indices(100, 8, rng=0)
    assert all(i < 50 for i in ht[:4]) and all(i >= 50 for i in ht[4:])


def test_fps_and_range_sampling():
    times = np.arange(100) / 25.0
    assert sampling.fps_indices(times, 5.0) == list(range(0, 100, 5))
    assert len(sampling.fps_indices(times, 25.0, max_frames=10)) == 10
    assert sampling.range_indices(times, 1.0, 2.0, 5) == [25, 30, 35, 40, 45]
    with pytest.raises(ValueError):
        sampling.range_indices(times, 2.0, 1.0, 5)


def test_timestamp_message_rounding():
    msg = sampling.timestamp_message([0, 1, 3], 25.0)
    assert msg == "The video contains 3 frames sampled at 0.0, 0.0, 0.1 seconds. "
    assert sampling.timestamp_message([3], 25.0).endswith("0.1 seconds. ")  # round(0.12, 1)


def test_clip_timepoints_short_and_long():
    short = clip_timepoints(16000)  # 1 s: every clip starts at 0
    assert all(s == 0 and e == 2 for s, e in short)
    assert clip_sample_bounds(short) == [(0, 32000)] * 8
    long = clip_timepoints(16000 * 30)
    assert long[1][0] == Fraction(28, 8) and long[-1][1] == Fraction(28 * 7, 8) + 2


def _slow_reference_resample(x: np.ndarray, orig: int, new: int) -> np.ndarray:
    """Direct float64 evaluation of the windowed-sinc formula, one output sample at a time."""
    import math

    g = math.gcd(orig, new)
    o, n = orig // g, new // g
    cutoff = min(o, n) * 0.99
    width = math.ceil(6 * o / cutoff)
    out = []
    for j in range(-(-n * len(x) // o)):
        b, q = divmod(j, n)
        acc = 0.0
        for k in range(-width, width + o):
            i = b * o + k
            if 0 <= i < len(x):
                t = max(-6.0, min(6.0, (k / o - q / n) * cutoff))
                w = math.cos(t * math.pi / 12) ** 2
                s = 1.0 if t == 0 else math.sin(math.pi * t) / (math.pi * t)
                acc += x[i] * s * w * cutoff / o
        out.append(acc)
    return np.array(out)


@pytest.mark.parametrize("orig,new", [(44100, 16000), (48000, 16000), (8000, 16000), (22050, 16000)])
def test_resampler_formula_and_ranges(orig, new):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 900)).astype(np.float32)
    full = resample(torch.from_numpy(x), orig, new)
    assert full.shape == (2, output_length(900, orig, new))
    ref = _slow_reference_resample(x[0].astype(np.float64), orig, new)
    assert np.abs(full[0].numpy() - ref).max() < 1e-4  # float32 kernel (as torchaudio) vs float64 formula
    for s, e in [(0, 7), (3, 150), (100, full.shape[1]), (full.shape[1] - 5, full.shape[1] + 10)]:
        part = resample_range(torch.from_numpy(x), orig, new, s, e)
        torch.testing.assert_close(part, full[:, s:e], atol=1e-6, rtol=0)


def test_fbank_shapes_and_mel_banks():
    x = torch.from_numpy(np.random.default_rng(1).standard_normal(32000).astype(np.float32))
    f = fbank(x)
    assert f.shape == (198, 128) and f.dtype == torch.float32
    banks = mel_banks(128, 512, 16000.0, 20.0, 0.0)
    assert banks.shape == (128, 257) and (banks[:, -1] == 0).all()
    assert (banks[3] == 0).all()  # the empty triangle kaldi-native-fbank refuses; torchaudio emits log(eps)
    assert fbank(torch.zeros(400)).shape == (1, 128)
    assert torch.allclose(fbank(torch.zeros(400)), torch.log(torch.tensor(torch.finfo(torch.float32).eps)))
    with pytest.raises(ValueError):
        fbank(torch.zeros(399))


def test_in_place_mean_is_shared_between_overlapping_clips():
    rng = np.random.default_rng(2)
    n = 16000 * 5
    wave = torch.from_numpy((rng.standard_normal((2, n)) * 0.1 + 0.05).astype(np.float32))
    bounds = clip_sample_bounds(clip_timepoints(n))
    shared = clips_from_waveform([(0, wave.clone())], bounds, n, "x")
    copies = torch.stack([clips_from_waveform([(0, wave.clone())], [b], n, "x")[0] for b in bounds])
    assert torch.equal(shared[0], copies[0])  # the first clip sees untouched samples
    assert not torch.equal(shared[1:], copies[1:])  # later overlapping clips see shifted samples
    # Buffers that only cover the clips give the same result as the whole waveform.
    parts = [(0, wave[:, : bounds[-1][1]].clone())]
    torch.testing.assert_close(clips_from_waveform(parts, bounds, n, "x"), shared, atol=0, rtol=0)


def test_inspect_cli(media_dir, capsys, monkeypatch):
    from videollama.cli import inspect_media
    import videollama.cli.main as cli_main

    path = make_video(media_dir / "cli.mp4", n_frames=20, fps=10, audio_seconds=2.0)
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    p = inspect_media.add_parser(sub, "inspect")
    assert isinstance(p, argparse.ArgumentParser)
    assert inspect_media.run(parser.parse_args(["inspect", str(path)])) == 0
    out = capsys.readouterr().out
    assert "frame count" in out and "audio: used" in out and "The video contains 8 frames" in out
    silent = make_video(media_dir / "silent.mp4", n_frames=20)
    assert cli_main.main(["inspect", str(silent)]) == 0
    assert "audio: NOT used" in capsys.readouterr().out
    assert cli_main.main(["inspect", str(media_dir / "missing.mp4")]) == 2
    assert "file not found" in capsys.readouterr().err
