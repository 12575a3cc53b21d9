"""Shared fixtures for the text-layer tests: every official fixture set found on disk.

The sets live in the directory named by $VIDEOLLAMA_OFFICIAL_FIXTURES (default: <repo>/../shared/fixtures/official);
each subdirectory holding a manifest.json is one set. Nothing about a set is hard-coded here: sizes, strings and
ids all come from its manifest.json and safetensors files.
"""

from __future__ import annotations

import json
import os
from functools import cached_property, lru_cache
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def official_root() -> Path:
    env = os.environ.get("VIDEOLLAMA_OFFICIAL_FIXTURES")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "fixtures" / "official"


def discover_sets() -> list[Path]:
    root = official_root()
    if not root.is_dir():
        return []
    return sorted(d for d in root.iterdir() if d.is_dir() and (d / "manifest.json").is_file())


class FixtureSet:
    """Lazy access to one official fixture set."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name

    @cached_property
    def manifest(self) -> dict:
        return json.loads((self.path / "manifest.json").read_text(encoding="utf-8"))

    @cached_property
    def tensors(self) -> dict:
        from safetensors.torch import load_file

        out: dict = {}
        for fname in ("inputs.safetensors", "expected.safetensors"):
            f = self.path / fname
            if f.is_file():
                out.update(load_file(str(f)))
        return out

    def tensor(self, key: str):
        if key not in self.tensors:
            pytest.skip(f"{self.name}: no tensor {key!r}")
        return self.tensors[key]

    @property
    def llama_dir(self) -> Path:
        return self.path / "llama"

    @cached_property
    def tokenizer(self):
        from videollama.text.tokenizer import LegacyLlamaTokenizer

        return LegacyLlamaTokenizer.from_pretrained(self.llama_dir)

    def num_media_tokens(self, train_flag: int) -> int:
        """Media tokens for a training sample: video queries on train_flag 0, audio queries on 1."""
        dims = self.manifest["dims"]
        return int(dims["num_video_query"] if train_flag == 0 else dims["num_audio_query"])


@lru_cache(maxsize=None)
def _load(path: str) -> FixtureSet:
    return FixtureSet(Path(path))


SETS = discover_sets()


@pytest.fixture(
    params=[str(p) for p in SETS] or [pytest.param(None, marks=pytest.mark.skip(reason="no official fixture sets found"))],
    ids=[p.name for p in SETS] or ["none"],
)
def official_set(request) -> FixtureSet:
    return _load(request.param)


@pytest.fixture
def any_tokenizer():
    """The tokenizer of the first fixture set (for unit tests that just need a real legacy tokenizer)."""
    if not SETS:
        pytest.skip("no official fixture sets found")
    return _load(str(SETS[0])).tokenizer
