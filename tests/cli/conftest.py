"""Fixtures for the CLI tests: one tiny random model per session, small media files, a main() runner."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO_ROOT
from tests.media.conftest import make_audio, make_video

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


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Path]:
    """Two copies of the example video, two images, a silent video, a wav and a corrupt file."""
    d = tmp_path_factory.mktemp("media")
    shutil.copy(EXAMPLE, d / "a.mp4")
    shutil.copy(EXAMPLE, d / "b.mp4")
    Image.fromarray(np.full((60, 80, 3), (200, 10, 10), np.uint8)).save(d / "red.png")
    Image.fromarray(np.full((60, 80, 3), (10, 10, 200), np.uint8)).save(d / "blue.png")
    make_video(d / "silent.mp4", n_frames=12)  # no audio track
    make_audio(d / "tone.wav", seconds=2.0, rate=16000, layout="mono")
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
