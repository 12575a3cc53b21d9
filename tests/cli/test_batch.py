"""`videollama batch` and `videollama.inference.batch`: grouping, batching, bad lines, resume, crash safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.cli.conftest import GEN, REPO_ROOT
from videollama.inference.batch import read_requests, record_key, run_batch, scan_output

SETTINGS = dict(greedy=True, max_new_tokens=6)


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def good_rows() -> list[dict]:
    return [
        {"id": "v1", "media": "a.mp4", "question": "What happens?"},
        {"id": "i1", "media": "red.png", "questions": ["Which colour?", "Which shape?", "How bright?"]},
        {"id": "v2", "media": "a.mp4", "question": "What do you hear?"},
        {"id": "v3", "media": "b.mp4", "question": "Describe it.", "use_audio": False},
        {"id": "i2", "media": "blue.png", "question": "Which colour?"},
        {"media": "a.mp4", "question": "A line without an id."},
    ]


@pytest.fixture
def job(tmp_path, media):
    """An input file in a folder of its own; media resolved through media_root."""
    return write_jsonl(tmp_path / "in.jsonl", good_rows()), media["a"].parent


def count_encodes(pipe, monkeypatch) -> Counter:
    calls: Counter = Counter()
    original = pipe._encode

    def spy(path, kind, use_audio):
        calls[(Path(path).name, use_audio)] += 1
        return original(path, kind, use_audio)

    monkeypatch.setattr(pipe, "_encode", spy)
    return calls


def spy_batches(pipe, monkeypatch) -> list[int]:
    sizes: list[int] = []
    original = pipe.ask_batch

    def spy(requests, **kw):
        sizes.append(len(requests))
        return original(requests, **kw)

    monkeypatch.setattr(pipe, "ask_batch", spy)
    return sizes


def test_outputs_grouping_and_batching(job, fresh_pipe, pipe, monkeypatch, tmp_path) -> None:
    src, root = job
    encodes = count_encodes(fresh_pipe, monkeypatch)
    sizes = spy_batches(fresh_pipe, monkeypatch)
    out = tmp_path / "out.jsonl"
    result = run_batch(fresh_pipe, src, out, media_root=root, batch_size=4, **SETTINGS)
    recs = read_jsonl(out)
    assert (result.total, result.answered, result.errors, result.skipped) == (8, 8, 0, 0)
    # one encode per (media file, audio setting); prompts from several files share a forward pass
    assert encodes == {("a.mp4", True): 1, ("red.png", True): 1, ("b.mp4", False): 1, ("blue.png", True): 1}
    assert result.encoded == 4 and sizes == [4, 4]
    by_q = {(r["id"], r["question"]): r for r in recs}
    assert len(by_q) == 8 and all("error" not in r for r in recs)
    r = by_q[("i1", "Which shape?")]
    assert r["line"] == 2 and r["question_index"] == 1 and r["media"] == "red.png"
    assert r["settings"]["max_new_tokens"] == 6 and r["settings"]["do_sample"] is False
    assert by_q[("v3", "Describe it.")]["use_audio"] is False
    assert by_q[(None, "A line without an id.")]["line"] == 6
    # batched answers equal sequential ones from the plain Python API
    for rec in recs:
        expected = pipe.ask(root / rec["media"], rec["question"], use_audio=rec["use_audio"], **SETTINGS)
        assert rec["answer"] == expected, rec


def test_relative_to_input_folder_and_cli(tmp_path, media, tiny_model_dir, cli) -> None:
    src = write_jsonl(media["a"].parent / "cli-in.jsonl", [{"id": 1, "media": "a.mp4", "question": "Q?"},
                                                           {"id": 2, "media": str(media["red"]), "question": "Q?"}])
    out = tmp_path / "sub" / "out.jsonl"
    rc, stdout, err = cli("batch", src, "--out", out, "--model", tiny_model_dir, "--batch-size", "2", *GEN)
    assert rc == 0, err
    assert stdout == ""
    assert "2 answered, 0 errors, 0 already done" in err
    assert [r["id"] for r in read_jsonl(out)] == [1, 2] and all(r["answer"] is not None for r in read_jsonl(out))
    rc, _, err = cli("batch", src, "--out", out, "--model", tiny_model_dir, *GEN)
    assert rc == 0 and "0 answered, 0 errors, 2 already done" in err and len(read_jsonl(out)) == 2


def test_bad_lines_are_recorded_not_fatal(tmp_path, media, fresh_pipe) -> None:
    root = media["a"].parent
    rows = [
        {"id": 1, "media": "a.mp4", "question": "Fine?"},
        "{this is not json",
        {"id": 3, "media": "a.mp4"},
        {"id": 4, "question": "No media?"},
        {"id": 5, "media": "missing.mp4", "question": "Q?"},
        {"id": 6, "media": "corrupt.mp4", "question": "Q?"},
        {"id": 7, "media": "red.png", "questions": []},
        {"id": 8, "media": "red.png", "questions": ["ok?", 3]},
        {"id": 1, "media": "red.png", "question": "Same id again?"},
        {"id": 10, "media": "red.png", "question": "Q?", "use_audio": "yes"},
        [1, 2],
        "",
        {"id": 12, "media": "tone.wav", "question": "What sound?"},
    ]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    result = run_batch(fresh_pipe, src, out, media_root=root, batch_size=8, **SETTINGS)
    recs = read_jsonl(out)
    errors = {r["line"]: r["error"] for r in recs if "error" in r}
    answered = sorted((r["line"], r["question"]) for r in recs if "answer" in r)
    assert answered == [(1, "Fine?"), (8, "ok?"), (13, "What sound?")]
    assert sorted(errors) == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert errors[2].startswith("line 2: invalid JSON")
    assert "missing or empty 'question'" in errors[3] and "missing or empty 'media'" in errors[4]
    assert errors[5].startswith("MediaNotFoundError: ") and "missing.mp4: file not found" in errors[5]
    assert "Media" in errors[6].split(":")[0]  # UnsupportedMediaError / CorruptMediaError
    assert "'questions' must be a non-empty list" in errors[7] and "questions[1]" in errors[8]
    assert "duplicate id 1 (first used on line 1)" in errors[9] and "use_audio" in errors[10]
    assert "expected a JSON object" in errors[11]
    assert (result.answered, result.errors) == (3, 10)
    # nothing is done twice on a rerun, errors included
    again = run_batch(fresh_pipe, src, out, media_root=root, **SETTINGS)
    assert (again.answered, again.errors, again.skipped) == (0, 0, 13) and len(read_jsonl(out)) == 13
    # --retry-errors answers them again (appending; the last line per key wins)
    (root / "missing.mp4").write_bytes(media["a"].read_bytes())  # the missing file has arrived
    try:
        retry = run_batch(fresh_pipe, src, out, media_root=root, retry_errors=True, **SETTINGS)
    finally:
        (root / "missing.mp4").unlink()
    assert (retry.skipped, retry.answered, retry.errors) == (3, 1, 9)
    last = {record_key(r): r for r in read_jsonl(out)}
    assert len(read_jsonl(out)) == 23 and len(last) == 13
    assert "answer" in next(r for r in last.values() if r["line"] == 5)


class Crash(Exception):
    pass


def test_resume_after_interrupted_run(job, fresh_pipe, tmp_path, monkeypatch) -> None:
    src, root = job
    out = tmp_path / "out.jsonl"
    chunks = []

    def crash_after_first_chunk(records):
        chunks.append(records)
        raise Crash

    with pytest.raises(Crash):
        run_batch(fresh_pipe, src, out, media_root=root, batch_size=3, on_chunk=crash_after_first_chunk, **SETTINGS)
    first = read_jsonl(out)
    assert len(first) == 3 == len(chunks[0])  # the chunk was on disk before the crash
    sizes = spy_batches(fresh_pipe, monkeypatch)
    result = run_batch(fresh_pipe, src, out, media_root=root, batch_size=3, **SETTINGS)
    assert (result.skipped, result.answered) == (3, 5) and sum(sizes) == 5
    recs = read_jsonl(out)
    assert recs[:3] == first  # never rewritten
    keys = [record_key(r) for r in recs]
    assert len(keys) == len(set(keys)) == 8
    assert set(keys) == {r.key for r in read_requests(src, root)}


def test_truncated_last_line_is_repaired(job, fresh_pipe, tmp_path) -> None:
    src, root = job
    out = tmp_path / "out.jsonl"
    run_batch(fresh_pipe, src, out, media_root=root, **SETTINGS)
    complete = read_jsonl(out)
    data = out.read_bytes()
    lines = data.splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # crash in the middle of a write
    result = run_batch(fresh_pipe, src, out, media_root=root, **SETTINGS)
    assert result.repaired_tail and (result.skipped, result.answered) == (7, 1)
    recs = read_jsonl(out)  # valid JSONL again
    assert len(recs) == 8 and recs[-1] == complete[-1]
    # a complete last record without its newline is kept (and given one)
    out.write_bytes(out.read_bytes().rstrip(b"\n"))
    done, repaired = scan_output(out)
    assert not repaired and len(done) == 8 and out.read_bytes().endswith(b"}\n")


def test_resume_after_killed_process(tmp_path, media, tiny_model_dir) -> None:
    root = media["a"].parent
    rows = [{"id": i, "media": ["a.mp4", "red.png", "b.mp4"][i % 3], "question": f"Question number {i}?"}
            for i in range(16)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "videollama.cli.main", "batch", str(src), "--out", str(out), "--media-root",
           str(root), "--model", str(tiny_model_dir), "--batch-size", "1", "--greedy", "--max-new-tokens", "12",
           "--device", "cpu", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= 2:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    written = out.read_bytes().count(b"\n")
    assert proc.returncode == -signal.SIGKILL and 2 <= written < 16, "the run should have been killed mid-way"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    recs = read_jsonl(out)
    assert sorted(r["id"] for r in recs) == list(range(16))  # all answered, none twice
    assert all("answer" in r for r in recs)
