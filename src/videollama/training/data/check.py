"""`videollama data-check` logic: annotation problems + missing / unreadable media, per dataset."""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field

from videollama.errors import MediaError, MediaNotFoundError
from videollama.training.data.records import Issue, Record, read_records, split_mixed

__all__ = ["DatasetReport", "check_dataset", "check_media"]


@dataclass
class DatasetReport:
    name: str
    format: str
    records: int = 0
    problems: list[Issue] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)  # missing / corrupt / too_short / format

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind: str, issue: Issue) -> None:
        self.counts[kind] += 1
        self.problems.append(issue)


def check_media(rec: Record, n_frames: int, quick: bool = False) -> tuple[str, str] | None:
    """None if usable, else (kind, message) with kind in missing / corrupt / too_short."""
    if rec.member:  # webdataset: the shard exists (it was read); check the bytes
        if quick:
            return None
        with open(rec.media, "rb") as fh:
            fh.seek(rec.offset)
            data = fh.read(rec.size)
        fd, tmp = tempfile.mkstemp(suffix=os.path.splitext(rec.member)[1], prefix="vllama-check-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            return _probe(tmp, rec, n_frames)
        finally:
            os.unlink(tmp)
    if not os.path.isfile(rec.media):
        return "missing", f"media file not found: {rec.media}"
    return None if quick else _probe(rec.media, rec, n_frames)


def _probe(path: str, rec: Record, n_frames: int) -> tuple[str, str] | None:
    from videollama.media.image import open_rgb
    from videollama.media.video import index_video, read_frames

    try:
        if rec.kind == "image":
            open_rgb(path)
            return None
        idx = index_video(path)
        if idx.vlen == 0:
            return "corrupt", f"{rec.media_id}: video stream has no frames"
        read_frames(path, [0, idx.vlen - 1], idx)
        if idx.vlen < n_frames:
            return "too_short", f"{rec.media_id}: {idx.vlen} frames, fewer than n_frames={n_frames}"
    except MediaNotFoundError as exc:
        return "missing", str(exc)
    except MediaError as exc:
        return "corrupt", str(exc).splitlines()[0]
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a corrupt file for this report
        return "corrupt", f"{rec.media_id}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def check_dataset(spec, quick: bool = False) -> DatasetReport:
    records, issues = read_records(spec)
    records, mixed = split_mixed(spec, records)
    issues = issues + mixed
    rep = DatasetReport(spec.name, spec.format, len(records))
    for issue in issues:
        rep.add("format", issue)
    seen: dict[str, tuple[str, str] | None] = {}
    for rec in records:
        key = rec.media_id
        if key not in seen:
            seen[key] = check_media(rec, spec.n_frames, quick)
        res = seen[key]
        if res is not None:
            rep.add(res[0], Issue(rec.source, res[0], res[1]))
    return rep
