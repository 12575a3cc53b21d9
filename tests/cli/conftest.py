"""Fixtures for the CLI tests: one tiny random model per session, small media files, a main() runner."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO_ROOT

EXAMPLE = REPO_ROOT / "src" / "videollama" / "assets" / "example.mp4"
GEN = ["--greedy", "--max-new-tokens", "6", "--device", "cpu"]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from videollama.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model", "tiny", seed=0)


@pytest.fixture(scope="session")
def pipe(tiny_model_dir):
    """Shared pipeline for reference answers (its embedding cache persists across tests)."""
    from videollama.inference.pipeline import VideoLLaMAPipeline

    return VideoLLaMAPipeline.from_pretrained(tiny_model_dir)


@pytest.fixture
def fresh_pipe(tiny_model_dir):
    """A pipeline with an empty cache, for counting encodes."""
    from videollama.inference.pipeline import VideoLLaMAPipeline

    return VideoLLaMAPipeline.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def example_video() -> Path:
    return EXAMPLE


def make_silent_video(path: Path, n_frames: int = 12) -> Path:
    """A small H.264 video without an audio track."""
    import av

    out = av.open(str(path), "w")
    stream = out.add_stream("libx264", rate=10)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    stream.options = {"preset": "ultrafast"}
    for i in range(n_frames):
        frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 15, np.uint8), format="rgb24")
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    return path


def make_wav(path: Path, seconds: float = 2.0, rate: int = 16000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Path]:
    """Two copies of the example video, two images, a silent video, a wav and a corrupt file."""
    d = tmp_path_factory.mktemp("media")
    shutil.copy(EXAMPLE, d / "a.mp4")
    shutil.copy(EXAMPLE, d / "b.mp4")
    Image.fromarray(np.full((60, 80, 3), (200, 10, 10), np.uint8)).save(d / "red.png")
    Image.fromarray(np.full((60, 80, 3), (10, 10, 200), np.uint8)).save(d / "blue.png")
    make_silent_video(d / "silent.mp4")
    make_wav(d / "tone.wav")
    (d / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    return {p.stem: p for p in d.iterdir()}


@pytest.fixture
def cli(capsys):
    """Run `videollama ARGS...` in-process; returns (exit code, stdout, stderr)."""
    from videollama.cli.main import main

    def run(*args: object) -> tuple[int, str, str]:
        rc = main([str(a) for a in args])
        captured = capsys.readouterr()
        return rc, captured.out, captured.err

    return run
