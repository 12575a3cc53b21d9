"""A tiny random model folder shared by the inference tests (built once per session)."""

from __future__ import annotations

import pytest

from tests.conftest import REPO_ROOT


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from videollama.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model", "tiny", seed=0)


@pytest.fixture(scope="session")
def pipe(tiny_model_dir):
    from videollama.inference.pipeline import VideoLLaMAPipeline

    return VideoLLaMAPipeline.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def example_video():
    return REPO_ROOT / "src" / "videollama" / "assets" / "example.mp4"
