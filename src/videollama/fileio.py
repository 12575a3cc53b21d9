"""Atomic file writes, torch-free (evaluation and serving import this without loading torch).

A write goes to a uniquely named temporary sibling that is renamed into place, so readers (and a resumed job) see
the old file or the whole new one, never a partial one, and concurrent writers of one path never share a
temporary file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 text to a temporary sibling (mode 0644), then rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = 2) -> None:
    """`obj` as JSON (UTF-8, non-ASCII kept, a final newline), written atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")
