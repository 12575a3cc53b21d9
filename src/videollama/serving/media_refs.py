"""Turning the `url` of a media content part into a local file the pipeline can read, safely.

Accepted: a path inside ``--media-root`` (relative to it, or absolute but inside it), a ``file://`` URL inside
it, a base64 ``data:`` URL (written to a private temporary file that is deleted after the request), and, only
with ``--allow-remote-urls``, an ``http(s)://`` URL (downloaded with a size cap and a timeout). Paths that
escape the media root (``..``, symlinks pointing out, absolute paths elsewhere) are refused with 403.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import mimetypes
import os
import shutil
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from videollama.serving.errors import APIError

MediaKind = Literal["video", "image", "audio"]

_SUFFIXES = {
    "video/mp4": ".mp4", "video/webm": ".webm", "video/quicktime": ".mov", "video/x-matroska": ".mkv",
    "video/x-msvideo": ".avi", "video/mpeg": ".mpg", "image/jpeg": ".jpg", "image/jpg": ".jpg",
    "image/png": ".png", "image/webp": ".webp", "image/gif": ".gif", "image/bmp": ".bmp",
    "audio/wav": ".wav", "audio/x-wav": ".wav", "audio/wave": ".wav", "audio/mpeg": ".mp3", "audio/mp3": ".mp3",
    "audio/ogg": ".ogg", "audio/flac": ".flac", "audio/x-flac": ".flac", "audio/aac": ".aac", "audio/mp4": ".m4a",
    "audio/webm": ".webm",
}
_DOWNLOAD_CHUNK = 1 << 16


@dataclass
class MediaRef:
    """A resolved media part: the local file, its kind, a printable label, and whether we own the file."""

    path: Path
    kind: MediaKind
    label: str
    temporary: bool = False


def suffix_for(mime: str) -> str:
    mime = mime.split(";")[0].strip().lower()
    return _SUFFIXES.get(mime) or mimetypes.guess_extension(mime) or ".bin"


class TempMediaStore:
    """A private (0700) folder of uploaded/downloaded media, named by content hash and reference counted.

    Equal content gets the same name and a fixed mtime, so the pipeline's embedding cache (keyed by path, size and
    mtime) hits when a client re-sends the same data: URL on every turn of a conversation.
    """

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="videollama-serve-"))
        self._refs: Counter[Path] = Counter()
        self._lock = threading.Lock()

    def _adopt(self, tmp: Path, digest: str, suffix: str) -> Path:
        path = self.dir / f"{digest[:40]}{suffix}"
        with self._lock:
            self._refs[path] += 1
            if self._refs[path] == 1:
                os.replace(tmp, path)
                os.utime(path, ns=(0, 0))
                return path
        tmp.unlink(missing_ok=True)
        return path

    def put_bytes(self, data: bytes, suffix: str) -> Path:
        fd, name = tempfile.mkstemp(dir=self.dir, suffix=".part")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return self._adopt(Path(name), hashlib.sha256(data).hexdigest(), suffix)

    def download(self, url: str, max_bytes: int, timeout: float) -> tuple[Path, str]:
        """Fetch `url` into the store; returns (path, content type). Errors are APIErrors (400/413)."""
        request = urllib.request.Request(url, headers={"User-Agent": "videollama-serve"})
        fd, name = tempfile.mkstemp(dir=self.dir, suffix=".part")
        digest = hashlib.sha256()
        total = 0
        try:
            with os.fdopen(fd, "wb") as fh, urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310
                length = resp.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > max_bytes:
                    raise APIError(413, f"remote media {url} is larger than the {max_bytes} byte limit",
                                   code="media_too_large")
                ctype = resp.headers.get("Content-Type", "")
                while chunk := resp.read(_DOWNLOAD_CHUNK):
                    total += len(chunk)
                    if total > max_bytes:
                        raise APIError(413, f"remote media {url} is larger than the {max_bytes} byte limit",
                                       code="media_too_large")
                    digest.update(chunk)
                    fh.write(chunk)
        except APIError:
            Path(name).unlink(missing_ok=True)
            raise
        except (urllib.error.URLError, OSError, ValueError) as exc:
            Path(name).unlink(missing_ok=True)
            raise APIError(400, f"cannot download {url}: {exc}", code="media_download_failed") from exc
        suffix = Path(urllib.parse.urlparse(url).path).suffix.lower() or suffix_for(ctype)
        return self._adopt(Path(name), digest.hexdigest(), suffix[:10]), ctype

    def release(self, path: Path) -> None:
        with self._lock:
            self._refs[path] -= 1
            if self._refs[path] <= 0:
                del self._refs[path]
                path.unlink(missing_ok=True)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def parse_data_url(url: str, max_bytes: int) -> tuple[bytes, str]:
    """`data:[<mime>][;...];base64,<payload>` -> (bytes, mime). Only base64 payloads are accepted."""
    header, sep, payload = url[5:].partition(",")
    if not sep:
        raise APIError(400, "malformed data: URL (no comma)", code="invalid_data_url")
    params = [p.strip() for p in header.split(";")]
    if "base64" not in (p.lower() for p in params[1:]):
        raise APIError(400, "data: URLs must be base64-encoded (data:<mime>;base64,...)", code="invalid_data_url")
    payload = "".join(payload.split())
    if len(payload) * 3 // 4 > max_bytes:
        raise APIError(413, f"data: URL media is larger than the {max_bytes} byte limit", code="media_too_large")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise APIError(400, f"data: URL is not valid base64 ({exc})", code="invalid_data_url") from exc
    if not data:
        raise APIError(400, "data: URL is empty", code="invalid_data_url")
    return data, (params[0] or "application/octet-stream").lower()


def resolve_local(raw: str, media_root: Path | None) -> Path:
    """A path (relative to the media root, or absolute) that must end up inside the media root."""
    if media_root is None:
        raise APIError(403, "local media paths are disabled: start the server with --media-root DIR "
                            "(or send the media as a base64 data: URL)", code="media_root_not_set")
    root = media_root.resolve()
    try:
        candidate = Path(raw)
        real = (candidate if candidate.is_absolute() else root / candidate).resolve()
    except (OSError, ValueError, RuntimeError) as exc:
        raise APIError(400, f"invalid media path {raw!r}", code="invalid_media_path") from exc
    if not real.is_relative_to(root):
        raise APIError(403, f"media path {raw!r} is outside the media root", code="media_path_forbidden")
    if not real.exists():
        raise APIError(400, f"{raw}: file not found in the media root", code="media_not_found")
    if not real.is_file():
        raise APIError(400, f"{raw}: not a regular file", code="media_not_found")
    return real


def resolve_media(url: str, kind: MediaKind, *, media_root: Path | None, store: TempMediaStore, max_bytes: int,
                  allow_remote: bool, download_timeout: float = 30.0) -> MediaRef:
    """Resolve one media URL (see the module docstring). The caller releases temporary files via the store."""
    url = url.strip()
    scheme = urllib.parse.urlsplit(url).scheme.lower() if ":" in url[:12] else ""
    if scheme == "data":
        data, mime = parse_data_url(url, max_bytes)
        path = store.put_bytes(data, suffix_for(mime))
        return MediaRef(path, kind, f"data: URL ({mime}, {len(data)} bytes)", temporary=True)
    if scheme == "file":
        parsed = urllib.parse.urlsplit(url)
        if parsed.netloc not in ("", "localhost"):
            raise APIError(400, f"file:// URLs must be local (got host {parsed.netloc!r})", code="invalid_media_url")
        raw = urllib.parse.unquote(parsed.path)
        return MediaRef(resolve_local(raw, media_root), kind, raw)
    if scheme in ("http", "https"):
        if not allow_remote:
            raise APIError(400, "remote media URLs are disabled on this server (start it with --allow-remote-urls), "
                                "send a data: URL or a path inside the media root", code="remote_urls_disabled")
        path, _ = store.download(url, max_bytes, download_timeout)
        return MediaRef(path, kind, url, temporary=True)
    if scheme and len(scheme) > 1:  # 'C:' style drive letters are not schemes
        raise APIError(400, f"unsupported media URL scheme {scheme!r}", code="invalid_media_url")
    if not url:
        raise APIError(400, "empty media URL", code="invalid_media_url")
    return MediaRef(resolve_local(url, media_root), kind, url)
