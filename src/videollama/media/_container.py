"""Opening media files with PyAV and turning every failure into one clear MediaError line."""

from __future__ import annotations

import os
from pathlib import Path

import av

from videollama.errors import CorruptMediaError, MediaError, MediaNotFoundError, UnsupportedMediaError

# Leading bytes of container formats we know; an unreadable file that starts like one is "corrupt",
# anything else that PyAV cannot open is "unsupported".
_MAGICS: tuple[tuple[int, bytes], ...] = (
    (4, b"ftyp"), (4, b"moov"), (4, b"mdat"), (4, b"free"), (4, b"wide"), (4, b"skip"),
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM (EBML)
    (0, b"RIFF"), (0, b"OggS"), (0, b"fLaC"), (0, b"ID3"), (0, b"FLV"), (0, b"\x00\x00\x01\xba"),
    (0, b"\x47"),  # MPEG-TS sync byte
    (0, b"\xff\xf1"), (0, b"\xff\xf9"), (0, b"\xff\xfb"), (0, b"\xff\xf3"), (0, b"\xff\xe3"),  # ADTS / MP3
)


def check_path(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as a Path, raising MediaNotFoundError / CorruptMediaError for missing or empty files."""
    p = Path(path)
    if not p.exists():
        raise MediaNotFoundError(f"{p}: file not found")
    if not p.is_file():
        raise MediaNotFoundError(f"{p}: not a regular file")
    if p.stat().st_size == 0:
        raise CorruptMediaError(f"{p}: file is empty (0 bytes)")
    return p


def looks_like_container(path: Path) -> bool:
    """True when the file starts with the signature of a known audio/video container."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return False
    return any(head[off : off + len(m)] == m for off, m in _MAGICS)


def open_container(path: Path) -> av.container.InputContainer:
    """``av.open`` with errors mapped onto the MediaError hierarchy (one line, naming the file)."""
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except av.error.FileNotFoundError as exc:
        raise MediaNotFoundError(f"{path}: file not found") from exc
    except av.error.PermissionError as exc:
        raise MediaError(f"{path}: permission denied") from exc
    except (av.error.InvalidDataError, av.error.EOFError) as exc:
        if looks_like_container(path):
            raise CorruptMediaError(f"{path}: truncated or corrupt media file ({_short(exc)})") from exc
        raise UnsupportedMediaError(f"{path}: not a recognised video, audio or image format") from exc
    except av.error.FFmpegError as exc:
        raise UnsupportedMediaError(f"{path}: cannot open media file ({_short(exc)})") from exc


def _short(exc: BaseException) -> str:
    """One-line, path-free summary of an FFmpeg error."""
    msg = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(msg).split())[:200]


def decode_error(path: Path, what: str, exc: BaseException) -> CorruptMediaError:
    """The error raised when a stream fails mid-decode."""
    return CorruptMediaError(f"{path}: {what} stream cannot be decoded ({_short(exc)})")
