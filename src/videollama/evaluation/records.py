"""Crash-safe JSONL files: append + flush + fsync per batch, and reading that survives a truncated last line."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from videollama.fileio import atomic_write_json

log = logging.getLogger(__name__)


def read_jsonl(path: str | os.PathLike[str], repair: bool = False) -> list[dict[str, Any]]:
    """Every complete record of a JSONL file (missing file: none).

    A last line cut short by a crash (no newline, or not valid JSON) is ignored; with `repair` the file is truncated
    to its last complete record, so records appended afterwards start on a fresh line. An invalid line in the middle
    is skipped with a warning.
    """
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    records: list[dict[str, Any]] = []
    good_end = 0  # byte offset just past the last complete, valid line
    pos = 0
    lineno = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        end = len(data) if nl < 0 else nl + 1
        line = data[pos:end]
        lineno += 1
        complete = nl >= 0
        text = line.strip()
        if text:
            try:
                record = json.loads(text)
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
            except ValueError:
                if complete and end < len(data):
                    log.warning("%s:%d: skipping an invalid JSONL line", path, lineno)
                    good_end = end
                # else: the torn last line; dropped
            else:
                if complete:
                    records.append(record)
                    good_end = end
                # a valid but unterminated last line: also dropped (the writer had not finished it)
        elif complete:
            good_end = end
        pos = end
    if repair and good_end < len(data):
        log.warning("%s: dropping a truncated last line (%d bytes)", path, len(data) - good_end)
        with open(path, "r+b") as fh:
            fh.truncate(good_end)
            fh.flush()
            os.fsync(fh.fileno())
    return records


def append_jsonl(path: str | os.PathLike[str], records: Iterable[dict[str, Any]]) -> None:
    """Append records (one line each) and make them durable: flush + fsync once for the whole batch."""
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if not lines:
        return
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(lines)
        fh.flush()
        os.fsync(fh.fileno())


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write JSON atomically (a unique temporary sibling renamed into place)."""
    atomic_write_json(path, obj)


def files_sha256(paths: Iterable[str | os.PathLike[str]]) -> str:
    """One SHA-256 over the given files' names and bytes (in the given order)."""
    h = hashlib.sha256()
    for p in paths:
        p = Path(p)
        h.update(p.name.encode() + b"\0")
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()
