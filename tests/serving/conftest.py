"""Shared fixtures of the serving tests: one tiny random model, a media root with tiny media, app factories."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")

from tests.conftest import REPO_ROOT  # noqa: E402
from tests.media.conftest import make_audio, make_video  # noqa: E402

EXAMPLE_VIDEO = REPO_ROOT / "src" / "videollama" / "assets" / "example.mp4"


@pytest.fixture(scope="session")
def serve_pipe(tmp_path_factory):
    from videollama.inference.pipeline import VideoLLaMAPipeline
    from videollama.tiny import make_tiny_model

    folder = make_tiny_model(tmp_path_factory.mktemp("serve-model") / "model", "tiny", seed=0)
    return VideoLLaMAPipeline.from_pretrained(folder)


@pytest.fixture(scope="session")
def media_root(tmp_path_factory) -> Path:
    """example.mp4 (video + audio), silent.mp4 (no audio track), red.png, tone.wav, broken.mp4, a nested folder."""
    from PIL import Image

    root = tmp_path_factory.mktemp("media-root")
    shutil.copy(EXAMPLE_VIDEO, root / "example.mp4")
    make_video(root / "silent.mp4", n_frames=8, fps=8)  # no audio track
    Image.fromarray(np.full((40, 60, 3), (200, 10, 10), np.uint8)).save(root / "red.png")
    make_audio(root / "tone.wav", seconds=1.0, rate=16000, layout="mono")
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)
    (root / "sub").mkdir()
    shutil.copy(root / "red.png", root / "sub" / "red copy.png")
    return root


@pytest.fixture(scope="session")
def outside_file(tmp_path_factory) -> Path:
    """A real media file outside the media root."""
    from PIL import Image

    path = tmp_path_factory.mktemp("outside") / "secret.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    return path


@pytest.fixture
def make_client(serve_pipe, media_root):
    """`make_client(**config_overrides)` -> a TestClient over a fresh app (closed at teardown)."""
    from fastapi.testclient import TestClient

    from videollama.serving import ServerConfig, create_app

    clients = []

    def make(**overrides):
        config = ServerConfig(**{"model_name": "tiny", "media_root": media_root, **overrides})
        client = TestClient(create_app(serve_pipe, config), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    return make_client()
