"""`videollama ask` and `videollama chat` on a tiny random model (greedy, a few tokens)."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from tests.cli.conftest import GEN, REPO_ROOT


class _Recorder(io.StringIO):
    """A stdout that remembers each write (to see that the answer arrives in pieces)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, s: str) -> int:
        self.writes.append(s)
        return super().write(s)

    def isatty(self) -> bool:
        return False


def test_ask_streams_the_greedy_answer(tiny_model_dir, pipe, example_video, monkeypatch) -> None:
    from videollama.cli.main import main

    expected = pipe.ask(example_video, "Describe the video.", greedy=True, max_new_tokens=12)
    pieces = list(pipe.stream(example_video, "Describe the video.", greedy=True, max_new_tokens=12))
    assert "".join(pieces) == expected
    out = _Recorder()
    monkeypatch.setattr(sys, "stdout", out)
    rc = main(["ask", str(example_video), "Describe the video.", "--model", str(tiny_model_dir),
               "--greedy", "--max-new-tokens", "12", "--device", "cpu"])
    assert rc == 0
    assert out.getvalue() == expected + "\n"
    assert [w for w in out.writes if w][:-1] == pieces  # written piece by piece, as streamed, then "\n"


@pytest.mark.parametrize("name", ["red", "tone", "a"])
def test_ask_image_audio_video(name, media, tiny_model_dir, pipe, cli) -> None:
    rc, out, err = cli("ask", media[name], "What is it?", "--model", tiny_model_dir, *GEN)
    assert rc == 0, err
    assert out == pipe.ask(media[name], "What is it?", greedy=True, max_new_tokens=6) + "\n"
    assert "audio branch skipped" not in err


def test_ask_prints_audio_notice(media, tiny_model_dir, cli) -> None:
    rc, out, err = cli("ask", media["silent"], "Q?", "--model", tiny_model_dir, *GEN)
    assert rc == 0 and out.endswith("\n")
    notices = [line for line in err.splitlines() if "audio branch skipped" in line]
    assert len(notices) == 1 and notices[0].startswith("notice: audio branch skipped")
    rc, _, err = cli("ask", media["silent"], "Q?", "--no-audio", "--model", tiny_model_dir, *GEN)
    assert rc == 0 and "audio branch skipped" not in err


def test_ask_options_reach_the_pipeline(media, tiny_model_dir, pipe, cli) -> None:
    rc, out, _ = cli("ask", media["a"], "Q?", "--model", tiny_model_dir, "--seed", "3", "--temperature", "0.7",
                     "--top-p", "0.8", "--max-new-tokens", "5", "--no-audio", "--system", "Be brief.",
                     "--dtype", "float32", "--device", "cpu")
    assert rc == 0
    expected = pipe.ask(media["a"], "Q?", use_audio=False, system="Be brief.", seed=3, temperature=0.7, top_p=0.8,
                        max_new_tokens=5)
    assert out == expected + "\n"
    rc, out, _ = cli("ask", media["a"], "Q?", "--model", tiny_model_dir, "--num-beams", "2", *GEN)
    assert rc == 0 and out == pipe.ask(media["a"], "Q?", greedy=True, num_beams=2, max_new_tokens=6) + "\n"


def test_ask_errors_are_one_line(media, tiny_model_dir, tmp_path, cli) -> None:
    rc, out, err = cli("ask", tmp_path / "missing.mp4", "Q?", "--model", tiny_model_dir, *GEN)
    assert rc == 2 and out == "" and err.strip().splitlines()[-1].endswith("missing.mp4: file not found")
    rc, _, err = cli("ask", media["corrupt"], "Q?", "--model", tiny_model_dir, *GEN)
    assert rc == 2 and err.strip().splitlines()[-1].startswith("error: ")
    rc, _, err = cli("ask", media["a"], "Q?", "--model", tmp_path / "nope", *GEN)
    assert rc == 2 and err.strip() == f"error: {tmp_path / 'nope'}: model folder not found"
    with pytest.raises(SystemExit):
        cli("ask", media["a"], "Q?", "--temperature", "0")


def test_chat_over_piped_stdin(media, tiny_model_dir, pipe, monkeypatch, cli) -> None:
    chat = pipe.chat(media["a"])
    first = chat.ask("What happens?", greedy=True, max_new_tokens=6)
    second = chat.ask("And then?", greedy=True, max_new_tokens=6)
    monkeypatch.setattr(sys, "stdin", io.StringIO("What happens?\n\nAnd then?\n/reset\nWhat happens?\n/quit\nIgnored?\n"))
    rc, out, err = cli("chat", media["a"], "--model", tiny_model_dir, *GEN)
    assert rc == 0
    assert out.splitlines() == [first, second, first]  # /reset: the third answer has no history again
    assert "(new conversation)" in err


def test_chat_eof_and_unknown_command(media, tiny_model_dir, pipe, monkeypatch, cli) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("/bogus\nWhich colour?"))  # no final newline, then EOF
    rc, out, err = cli("chat", media["red"], "--model", tiny_model_dir, *GEN)
    assert rc == 0
    assert out == pipe.ask(media["red"], "Which colour?", greedy=True, max_new_tokens=6) + "\n"
    assert "unknown command '/bogus'" in err


def _subprocess(*args: object, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "videollama.cli.main", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=120, **kw)


def test_console_ask_and_chat_through_a_real_pipe(media, tiny_model_dir, pipe) -> None:
    proc = _subprocess("ask", media["silent"], "What?", "--model", tiny_model_dir, *GEN)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == pipe.ask(media["silent"], "What?", greedy=True, max_new_tokens=6) + "\n"
    assert "notice: audio branch skipped" in proc.stderr and "Traceback" not in proc.stderr

    chat = pipe.chat(media["b"])
    expected = [chat.ask("One?", greedy=True, max_new_tokens=6), chat.ask("Two?", greedy=True, max_new_tokens=6)]
    proc = _subprocess("chat", media["b"], "--model", tiny_model_dir, *GEN, input="One?\nTwo?\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == expected
