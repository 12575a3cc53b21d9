"""Shared test helpers: where the read-only reference fixtures live."""

from __future__ import annotations

import os
from pathlib import Path

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
