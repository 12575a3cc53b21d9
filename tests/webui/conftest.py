"""Fixtures of the web demo tests: a tiny random model (built once), its pipeline, media files."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
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
    import av

    path = tmp_path_factory.mktemp("webui-media") / "silent.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        stream.codec_context.time_base = Fraction(1, 10)
        for i in range(20):
            frame = np.full((48, 64, 3), (i * 11) % 255, np.uint8)
            frame[:, :16] = (200, 30, 30)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
