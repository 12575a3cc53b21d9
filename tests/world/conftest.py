"""One small generated world per session (train split), shared by the tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from videollama.world import WorldOptions, generate_world


def scenes_of(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((root / "videos").rglob("*.json"))]


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world") / "train"
    generate_world(out, WorldOptions(n=84, seed=3, min_seconds=2, max_seconds=5), workers=2)
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    from videollama.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("world-tiny") / "model", "tiny", seed=0)
