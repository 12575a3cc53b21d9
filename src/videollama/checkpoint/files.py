"""Safe reading and atomic writing of weight files.

Official `.pth` files are read with `torch.load(weights_only=True, mmap=True)`: nothing arbitrary is
unpickled and tensors stay on disk until used. Every output goes to a temporary sibling that is
renamed into place, so a failure never leaves a partial folder or file.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from videollama.errors import CheckpointError
from videollama.fileio import atomic_write_text  # noqa: F401  (re-exported: checkpoint writers use it)


def load_torch_file(path: str | Path, what: str) -> Any:
    """Load a `.pth` with weights_only; every failure becomes a one-line CheckpointError naming the file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: file not found ({what})")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, expected a file ({what})")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: file is empty ({what})")
    with path.open("rb") as fh:
        magic = fh.read(4)
    if not (magic.startswith(b"PK") or magic[:1] == b"\x80"):  # zip (torch>=1.6) or a legacy pickle
        raise CheckpointError(f"{path}: not a PyTorch checkpoint file ({what})")
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc) and "zip" not in str(exc).lower():
                raise
            # Legacy (pre-zip) torch.save format cannot be memory-mapped: load it normally.
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        first = lines[0] if lines else "unpickling failed"
        if "weights_only" in str(exc) or "Weights only" in str(exc):
            detail = next((ln for ln in lines if "Unsupported global" in ln or "Unsupported operand" in ln), first)
            raise CheckpointError(
                f"{path}: holds objects other than tensors; refusing to unpickle them ({what}): {detail}"
            ) from exc
        raise CheckpointError(f"{path}: corrupt or not a PyTorch checkpoint ({what}): {first}") from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: truncated, corrupt or not a PyTorch checkpoint ({what}): {first}") from exc


@contextlib.contextmanager
def atomic_dir(final: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `final`; on success it replaces `final`, on failure it is removed."""
    final = Path(final)
    if final.exists() and not overwrite:
        raise CheckpointError(f"{final}: output folder already exists (use --overwrite, or overwrite=True, to replace it)")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; the result should look like any folder the user makes
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary sibling, then rename into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
