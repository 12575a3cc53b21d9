"""Atomic writes (videollama.fileio): whole files or none, no temporary files left, torch-free."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from videollama.evaluation.records import write_json
from videollama.fileio import atomic_write_json, atomic_write_text


def test_writes_the_whole_text_readable_by_all(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    atomic_write_text(target, "first")
    atomic_write_text(target, "ünïcode second\n")
    assert target.read_text(encoding="utf-8") == "ünïcode second\n"
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_a_failed_rename_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "summary.json"
    write_json(target, {"n": 1})

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_json(target, {"n": 2})
    assert json.loads(target.read_text()) == {"n": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_unserialisable_json_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    with pytest.raises(TypeError):
        atomic_write_json(target, {"bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_json_keeps_non_ascii_and_ends_with_a_newline(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    atomic_write_json(target, {"q": "¿qué?"}, indent=None)
    assert target.read_text(encoding="utf-8") == '{"q": "¿qué?"}\n'


def test_evaluation_writers_do_not_import_torch() -> None:
    code = ("import sys, videollama.fileio, videollama.evaluation.records, videollama.evaluation.judge; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
