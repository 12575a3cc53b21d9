"""Batch question answering over a JSONL file: grouped by media, batched, resumable, crash-safe.

Input: one JSON object per line::

    {"id": "clip-1", "media": "videos/a.mp4", "question": "What is the dog doing?"}
    {"id": "clip-2", "media": "b.jpg", "questions": ["Which colour?", "How many?"], "use_audio": false}

Relative media paths are resolved against `media_root` (default: the input file's folder). Output: one JSON
object per answered question, in the order chunks finish::

    {"id": "clip-1", "line": 1, "media": "videos/a.mp4", "question": "...", "answer": "...",
     "use_audio": true, "settings": {...GenerationSettings...}}

A line that cannot be answered (malformed JSON, missing fields, missing or corrupt media, a generation
failure) gives an output line with `"error": "..."` instead of `"answer"`; it never stops the run.

Resuming: a rerun with the same output file skips every request whose key already has an output line
(`id` + question index when the line has an `id`, else line number + question text). Errors count as done
unless `retry_errors=True` (then the newer line wins for readers that take the last line per key).

Crash safety: the output file is only ever appended to; each finished chunk is written, flushed and
fsync'ed before the next one starts, so a crash loses at most the chunk in flight. A truncated last line
(a crash in the middle of a write) is cut off on resume and its request answered again.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from videollama.errors import VideoLLaMAError

log = logging.getLogger(__name__)

Key = tuple[Any, ...]


@dataclass
class BatchRequest:
    """One question of one input line (an input line with `questions: [...]` gives several)."""

    line: int  # 1-based line number in the input file
    id: Any = None  # the line's `id`, if any (any JSON value)
    media: str | None = None  # as written in the input
    media_path: Path | None = None  # resolved
    question: str | None = None
    question_index: int | None = None  # position in `questions`, None for a single `question`
    use_audio: bool = True
    error: str | None = None  # set when the line is unusable
    duplicate: bool = False  # the id was already used by an earlier line

    @property
    def key(self) -> Key:
        """What identifies this request across runs (see `record_key`)."""
        return _key(self.id, self.line, self.question, self.question_index, self.duplicate)

    def record(self, **extra: Any) -> dict[str, Any]:
        """The output line for this request (without answer / error)."""
        rec: dict[str, Any] = {"id": self.id, "line": self.line, "media": self.media, "question": self.question}
        if self.question_index is not None:
            rec["question_index"] = self.question_index
        if self.duplicate:
            rec["duplicate"] = True
        rec["use_audio"] = self.use_audio
        rec.update(extra)
        return rec


def _key(id_: Any, line: int, question: str | None, question_index: int | None, duplicate: bool) -> Key:
    if id_ is not None and not duplicate:
        return ("id", json.dumps(id_, sort_keys=True), question_index or 0)
    return ("line", int(line), question)


def record_key(rec: dict[str, Any]) -> Key | None:
    """The request key of an output line, or None if the line is not one of ours."""
    if not isinstance(rec, dict) or not isinstance(rec.get("line"), int):
        return None
    return _key(rec.get("id"), rec["line"], rec.get("question"), rec.get("question_index"), bool(rec.get("duplicate")))


@dataclass
class BatchResult:
    """What a run did."""

    total: int = 0  # requests in the input (malformed lines count as one)
    skipped: int = 0  # already in the output file
    answered: int = 0
    errors: int = 0
    encoded: int = 0  # media files encoded (one per distinct file and audio setting)
    repaired_tail: bool = False  # a truncated last output line was cut off
    notices: dict[str, str] = field(default_factory=dict)  # media -> e.g. why audio was skipped


# ---- input ---------------------------------------------------------------------------------------------
def read_requests(path: str | os.PathLike[str], media_root: str | os.PathLike[str] | None = None) -> list[BatchRequest]:
    """Parse an input JSONL file into requests; bad lines become requests with `error` set."""
    path = Path(path)
    root = Path(media_root) if media_root is not None else path.parent
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise VideoLLaMAError(f"{path}: input file not found") from exc
    except UnicodeDecodeError as exc:
        raise VideoLLaMAError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    requests: list[BatchRequest] = []
    first_line_of: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        for req in _parse_line(raw, number, root):
            if req.id is not None and req.error is None:
                ident = json.dumps(req.id, sort_keys=True)
                first = first_line_of.setdefault(ident, number)
                if first != number:
                    req.duplicate = True
                    req.error = f"line {number}: duplicate id {ident} (first used on line {first})"
            requests.append(req)
    return requests


def _parse_line(raw: str, number: int, root: Path) -> list[BatchRequest]:
    where = f"line {number}"
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        return [BatchRequest(number, error=f"{where}: invalid JSON ({exc.msg} at column {exc.colno})")]
    if not isinstance(obj, dict):
        return [BatchRequest(number, error=f"{where}: expected a JSON object, got {type(obj).__name__}")]
    id_ = obj.get("id")
    if isinstance(id_, (dict, list)):
        return [BatchRequest(number, error=f"{where}: 'id' must be a string or a number")]
    base = BatchRequest(number, id=id_)
    media = obj.get("media")
    if isinstance(media, str) and media:
        base.media = media
        p = Path(media).expanduser()
        base.media_path = p if p.is_absolute() else root / p
    else:
        base.error = f"{where}: missing or empty 'media' (a path)"
    use_audio = obj.get("use_audio", True)
    if isinstance(use_audio, bool):
        base.use_audio = use_audio
    elif base.error is None:
        base.error = f"{where}: 'use_audio' must be true or false"
    if "questions" in obj:
        questions = obj["questions"]
        if not isinstance(questions, list) or not questions:
            return [_with(base, error=base.error or f"{where}: 'questions' must be a non-empty list of strings")]
        out = []
        for i, q in enumerate(questions):
            bad = None if isinstance(q, str) and q.strip() else f"{where}: questions[{i}] must be a non-empty string"
            out.append(_with(base, question=q if isinstance(q, str) else None, question_index=i,
                             error=base.error or bad))
        return out
    q = obj.get("question")
    if not (isinstance(q, str) and q.strip()):
        return [_with(base, error=base.error or f"{where}: missing or empty 'question' (or 'questions')")]
    return [_with(base, question=q)]


def _with(base: BatchRequest, **changes: Any) -> BatchRequest:
    return BatchRequest(**{**asdict(base), **changes})


# ---- output --------------------------------------------------------------------------------------------
def scan_output(path: str | os.PathLike[str], repair: bool = True,
                retry_errors: bool = False) -> tuple[set[Key], bool]:
    """Keys already answered in an existing output file, and whether a truncated last line was cut off.

    A last line without its newline that is not valid JSON is the trace of a crash mid-write: it is
    truncated away (the file is never rewritten, only shortened by that partial line). A last line that
    is valid JSON but lacks its newline gets one.
    """
    path = Path(path)
    done: set[Key] = set()
    if not path.exists():
        return done, False
    data = path.read_bytes()
    repaired = False
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("%s: line %d is not valid JSON; ignored", path, number)
            continue
        _note(rec, done, retry_errors)
    if tail.strip():
        try:
            rec = json.loads(tail)
        except (json.JSONDecodeError, UnicodeDecodeError):
            rec = None
        if repair:
            with open(path, "r+b") as f:
                if rec is None:  # partial line from a crash: cut it off
                    f.truncate(len(data) - len(tail))
                    repaired = True
                    log.warning("%s: removed a truncated last line (%d bytes); it will be answered again",
                                path, len(tail))
                else:
                    f.seek(0, os.SEEK_END)
                    f.write(b"\n")
                f.flush()
                os.fsync(f.fileno())
        if rec is not None:
            _note(rec, done, retry_errors)
    return done, repaired


def _note(rec: Any, done: set[Key], retry_errors: bool) -> None:
    key = record_key(rec)
    if key is not None and not (retry_errors and "error" in rec):
        done.add(key)


class _Appender:
    """Append-only JSONL writer: each `write` of a chunk is flushed and fsync'ed; the file is locked."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f: IO[bytes] = open(path, "ab")
        try:
            import fcntl

            fcntl.flock(self._f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - not POSIX
            pass
        except OSError as exc:
            self._f.close()
            raise VideoLLaMAError(f"{path}: another batch run is writing to this file") from exc

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        data = b"".join(json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n" for r in records)
        if data:
            self._f.write(data)
            self._f.flush()
            os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


# ---- the run ---------------------------------------------------------------------------------------------
def _groups(requests: list[BatchRequest]) -> Iterator[tuple[tuple[str, bool], list[BatchRequest]]]:
    """Requests grouped by (resolved media path, use_audio), in order of first appearance."""
    groups: dict[tuple[str, bool], list[BatchRequest]] = {}
    for req in requests:
        assert req.media_path is not None
        groups.setdefault((os.path.abspath(req.media_path), req.use_audio), []).append(req)
    yield from groups.items()


def run_batch(
    pipe: Any,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    media_root: str | os.PathLike[str] | None = None,
    batch_size: int = 8,
    greedy: bool | None = None,
    retry_errors: bool = False,
    progress: bool | None = None,
    model_name: str | None = None,
    on_chunk: Callable[[list[dict[str, Any]]], None] | None = None,
    **settings: Any,
) -> BatchResult:
    """Answer every request of `input_path` into `output_path` (appending; see the module docstring).

    `pipe` is a `VideoLLaMAPipeline`; `greedy` and `settings` are generation settings as for `pipe.ask`.
    Each media file is encoded once (requests are grouped by file) and up to `batch_size` prompts, from
    any files, share one left-padded generation. `progress`: show a tqdm bar (None: when stderr is a
    terminal). `on_chunk` is called with the records of each chunk after they are safely on disk.
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise VideoLLaMAError(f"batch size must be at least 1, got {batch_size}")
    gen = pipe.settings.updated(greedy=greedy, **settings)
    settings_record = asdict(gen)
    if model_name is not None:
        settings_record = {"model": model_name, **settings_record}
    result = BatchResult()
    requests = read_requests(input_path, media_root)
    result.total = len(requests)
    done, result.repaired_tail = scan_output(output_path, repair=True, retry_errors=retry_errors)
    todo = [r for r in requests if r.key not in done]
    result.skipped = len(requests) - len(todo)

    out = _Appender(Path(output_path))
    bar = tqdm(total=len(todo), unit="q", desc="batch", disable=(not sys.stderr.isatty()) if progress is None
               else not progress, file=sys.stderr)

    def emit(records: list[dict[str, Any]]) -> None:
        out.write(records)
        for rec in records:
            if "error" in rec:
                result.errors += 1
            else:
                result.answered += 1
        bar.update(len(records))
        if on_chunk is not None:
            on_chunk(records)

    try:
        bad = [r for r in todo if r.error is not None]
        if bad:
            emit([r.record(error=r.error) for r in bad])
        pending: list[tuple[BatchRequest, Any]] = []  # (request, PreparedMedia), at most batch_size + group
        for (_, use_audio), group in _groups([r for r in todo if r.error is None]):
            media_path = group[0].media_path
            try:
                prepared = pipe.prepare(media_path, use_audio=use_audio)
            except Exception as exc:  # noqa: BLE001 - missing/corrupt media: recorded, never fatal
                emit([r.record(error=_error_text(exc)) for r in group])
                continue
            result.encoded += 1
            if prepared.notice:
                result.notices[str(group[0].media)] = prepared.notice
                bar.write(f"notice: {group[0].media}: {prepared.notice}", file=sys.stderr)
            pending.extend((r, prepared) for r in group)
            while len(pending) >= batch_size:
                emit(_answer_chunk(pipe, pending[:batch_size], batch_size, greedy, settings, settings_record))
                del pending[:batch_size]
        if pending:
            emit(_answer_chunk(pipe, pending, batch_size, greedy, settings, settings_record))
    finally:
        bar.close()
        out.close()
    return result


def _answer_chunk(pipe: Any, chunk: list[tuple[BatchRequest, Any]], batch_size: int, greedy: bool | None,
                  settings: dict[str, Any], settings_record: dict[str, Any]) -> list[dict[str, Any]]:
    """Answer one chunk in a single batched generation; on failure, one by one so one bad prompt stays alone."""
    def record(req: BatchRequest, prepared: Any, answer: str) -> dict[str, Any]:
        extra: dict[str, Any] = {"answer": answer}
        if prepared.notice:
            extra["notice"] = prepared.notice
        extra["settings"] = settings_record
        return req.record(**extra)

    try:
        answers = pipe.ask_batch([(p, r.question) for r, p in chunk], batch_size=batch_size, greedy=greedy,
                                 **settings)
        return [record(r, p, a) for (r, p), a in zip(chunk, answers)]
    except Exception as exc:  # noqa: BLE001 - a batch must not abort; retried below row by row
        if len(chunk) == 1:
            r, _ = chunk[0]
            return [r.record(error=_error_text(exc))]
        log.warning("batched generation failed (%s); answering the chunk one by one", _error_text(exc))
    out = []
    for r, p in chunk:
        try:
            out.append(record(r, p, pipe.ask_batch([(p, r.question)], batch_size=1, greedy=greedy, **settings)[0]))
        except Exception as exc:  # noqa: BLE001
            out.append(r.record(error=_error_text(exc)))
    return out


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


__all__ = ["BatchRequest", "BatchResult", "read_requests", "scan_output", "record_key", "run_batch"]
