"""Shared test helpers: where the read-only reference fixtures live."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# Tests write only to temporary folders: the videollama cache (tiny models, the converted SmolLM2 of the default
# model) goes to a per-session temp folder unless the developer points VIDEOLLAMA_CACHE somewhere on purpose.
if "VIDEOLLAMA_CACHE" not in os.environ:
    _SESSION_CACHE = tempfile.mkdtemp(prefix="videollama-test-cache-")
    os.environ["VIDEOLLAMA_CACHE"] = _SESSION_CACHE
    atexit.register(shutil.rmtree, _SESSION_CACHE, ignore_errors=True)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


def fixture_root(env_var: str, default: Path) -> Path:
    return Path(os.environ.get(env_var, str(default)))


def official_fixture_sets() -> list[Path]:
    """Every set (a folder with manifest.json) under $VIDEOLLAMA_OFFICIAL_FIXTURES (default ../shared/fixtures/official)."""
    root = fixture_root("VIDEOLLAMA_OFFICIAL_FIXTURES", SHARED / "fixtures" / "official")
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "manifest.json").is_file())
