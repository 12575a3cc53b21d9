"""Fixtures of the web demo tests: a tiny random model (built once), its pipeline, media files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

EXAMPLE_VIDEO = REPO_ROOT / "src" / "videollama" / "assets" / "example.mp4"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from videollama.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("webui-tiny") / "model", "tiny", seed=0)


@pytest.fixture(scope="session")
def pipe(tiny_model_dir):
    """Short answers keep the tests fast (the UI's max-new-tokens slider starts at this value)."""
    from videollama.inference.pipeline import GenerationSettings, VideoLLaMAPipeline

    return VideoLLaMAPipeline.from_pretrained(tiny_model_dir, settings=GenerationSettings(max_new_tokens=12))


@pytest.fixture(scope="session")
def example_video() -> Path:
    return EXAMPLE_VIDEO


@pytest.fixture(scope="session")
def silent_video(tmp_path_factory) -> Path:
    """A 2-second video with no audio track at all (written with PyAV)."""
    from tests.media.conftest import make_video

    return make_video(tmp_path_factory.mktemp("webui-media") / "silent.mp4", n_frames=20, fps=10)
