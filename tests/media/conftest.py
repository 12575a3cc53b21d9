"""Shared helpers for the media tests: tiny media files generated with PyAV in a self-cleaning temp dir."""

from __future__ import annotations

import shutil
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import av
import numpy as np
import pytest


@pytest.fixture
def media_dir() -> Iterator[Path]:
    """A temp dir removed after the test (pytest's tmp_path keeps the last runs; we leave nothing behind)."""
    d = Path(tempfile.mkdtemp(prefix="videollama-media-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def pattern(i: int, h: int, w: int) -> np.ndarray:
    """A frame whose content identifies it: brightness ramps with the frame number, left quarter white."""
    a = np.full((h, w, 3), (i * 7) % 200, dtype=np.uint8)
    a[:, : max(1, w // 4)] = 255
    return a


def make_video(
    path: Path,
    n_frames: int = 30,
    size: tuple[int, int] = (64, 48),  # (width, height)
    fps: int = 10,
    codec: str = "libx264",
    audio_seconds: float | None = None,
    audio_rate: int = 44100,
    audio_layout: str = "stereo",
    gop: int | None = None,
    rotation: int | None = None,
    pts: Sequence[int] | None = None,  # custom pts in 1/1000 s (variable frame rate)
    frame_fn=pattern,
) -> Path:
    """Write a small video (optionally with a sine-wave audio track) and return its path."""
    out = av.open(str(path), "w")
    vs = out.add_stream(codec, rate=fps)
    vs.width, vs.height = size
    vs.pix_fmt = "yuv420p"
    opts = {"preset": "ultrafast"} if codec == "libx264" else {}
    if gop:
        vs.codec_context.gop_size = gop
        if codec == "libx264":
            opts.update({"keyint": str(gop), "min-keyint": str(gop), "scenecut": "0"})
    vs.options = opts
    if pts is not None:
        vs.codec_context.time_base = Fraction(1, 1000)
    if rotation is not None:
        vs.set_display_rotation(rotation)
    aus = None
    if audio_seconds is not None:
        aus = out.add_stream("aac", rate=audio_rate, layout=audio_layout)
    for i in range(n_frames):
        frame = av.VideoFrame.from_ndarray(frame_fn(i, size[1], size[0]), format="rgb24")
        if pts is not None:
            frame.pts = pts[i]
            frame.time_base = Fraction(1, 1000)
        for p in vs.encode(frame):
            out.mux(p)
    for p in vs.encode():
        out.mux(p)
    if aus is not None:
        _write_audio(out, aus, audio_seconds, audio_rate, audio_layout)
    out.close()
    return path


def sine(seconds: float, rate: int, channels: int) -> np.ndarray:
    """float32 (channels, n) test tone, a different frequency per channel."""
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    return np.stack([0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(channels)]).astype(np.float32)


def _write_audio(out, stream, seconds: float, rate: int, layout: str) -> None:
    channels = len(av.AudioLayout(layout).channels)
    data = sine(seconds, rate, channels)
    fmt = stream.codec_context.format.name if stream.codec_context.format else "fltp"
    block = 1024
    for start in range(0, data.shape[1], block):
        chunk = data[:, start : start + block]
        if fmt in ("s16", "s16p"):
            arr = (chunk * 32767).astype(np.int16)
            arr = arr if fmt == "s16p" else arr.T.reshape(1, -1)
        elif fmt in ("s32", "s32p"):
            arr = (chunk * 2147483000).astype(np.int32)
            arr = arr if fmt == "s32p" else arr.T.reshape(1, -1)
        elif fmt == "flt":
            arr = chunk.T.reshape(1, -1).copy()
        else:
            arr = np.ascontiguousarray(chunk)
        frame = av.AudioFrame.from_ndarray(arr, format=fmt, layout=layout)
        frame.sample_rate = rate
        frame.pts = start
        for p in stream.encode(frame):
            out.mux(p)
    for p in stream.encode():
        out.mux(p)


def make_audio(path: Path, seconds: float, rate: int = 44100, layout: str = "stereo", codec: str | None = None) -> Path:
    """Write an audio-only file; the codec follows the extension (wav, flac, mp3, m4a, ogg/opus)."""
    codec = codec or {".wav": "pcm_s16le", ".flac": "flac", ".mp3": "libmp3lame", ".m4a": "aac", ".ogg": "libopus"}[
        path.suffix
    ]
    out = av.open(str(path), "w")
    stream = out.add_stream(codec, rate=rate, layout=layout)
    _write_audio(out, stream, seconds, rate, layout)
    out.close()
    return path
