"""Annotation readers: one per `DatasetFormat` (SPEC §5.2). Each gives `Record`s plus `Issue`s (file:line).

A reader never raises on bad content: a malformed record becomes an `Issue` (counted and logged by the dataset,
listed by `videollama data-check`) and is left out. Media files are NOT opened here (that is the dataset's and
data-check's job), so reading 2.5M WebVid rows stays cheap.

Formats
* ``webvid``: ``annotations`` = folder of ``*.csv`` (all concatenated), a csv file or a glob; columns
  ``videoid,page_dir,name``; video ``media_root/{page_dir}/{videoid}.mp4``.
* ``cc_sbu_align``: ``filter_cap.json`` ``{"annotations":[{"image_id","caption"}]}``; image ``media_root/{image_id}.jpg``.
* ``llava_instruct``: json list ``[{"image","conversations":[{"from","value"}]}]``; image
  ``media_root/{image_path_prefix}{image}`` (official prefix ``COCO_train2014_``, quirk 28).
* ``videochat_instruct``: json list ``[{"video","QA":[{"q","a"}]}]``; video ``media_root/{video}``.
* ``jsonl``: one object per line: ``{"media", "caption"}`` or ``{"media", "conversations"}`` (or ``"QA"``);
  optional ``"type": "video"|"image"`` (default: from the file extension).
* ``webdataset``: ``.tar`` shards (folder, file or glob); members ``{key}.{mp4|avi|mov|mkv|webm|jpg|jpeg|png|webp|bmp}``
  and ``{key}.json`` (same object as a jsonl line, without ``media``). Members are indexed by offset so samples
  are read with a plain seek (no tar handle kept open: safe in DataLoader workers).
"""

from __future__ import annotations

import csv
import glob
import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

VIDEO_EXTS = {"mp4", "avi", "mov", "mkv", "webm", "m4v", "mpg", "mpeg", "flv", "wmv", "3gp", "ts"}
IMAGE_EXTS = {"jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"}

__all__ = ["Record", "Issue", "read_records", "media_kind", "VIDEO_EXTS", "IMAGE_EXTS"]


@dataclass(frozen=True)
class Record:
    """One annotation: where its media is and its text (caption, or turns / QA)."""

    source: str  # "annotation_file:line" (webdataset: "shard.tar:key")
    media: str  # absolute path; webdataset: the shard path
    kind: str  # "video" | "image"
    caption: str | None = None
    turns: tuple[dict[str, str], ...] | None = None  # [{"from": "human"|"gpt", "value"}]
    qa: tuple[dict[str, str], ...] | None = None  # videochat [{"q", "a"}]
    member: str | None = None  # webdataset: member name inside the shard
    offset: int = 0  # webdataset: byte offset of the member data
    size: int = 0  # webdataset: member size in bytes
    mtime: float = 0.0  # webdataset: member mtime

    @property
    def media_id(self) -> str:
        """Identity of the media (a file path, or `shard#member`)."""
        return f"{self.media}#{self.member}" if self.member else self.media


@dataclass(frozen=True)
class Issue:
    """A problem in an annotation file, at `source` (file:line)."""

    source: str
    reason: str  # bad_json | missing_field | empty_caption | not_alternating | bad_value | no_files
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}: {self.message}"


def media_kind(path: str) -> str | None:
    ext = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    return "video" if ext in VIDEO_EXTS else "image" if ext in IMAGE_EXTS else None


def _files(spec_path: str, patterns: tuple[str, ...]) -> list[str]:
    p = Path(spec_path)
    if p.is_dir():
        out: set[str] = set()
        for pat in patterns:
            out.update(str(x) for x in p.glob(pat))
        return sorted(out)
    if any(ch in spec_path for ch in "*?["):
        return sorted(glob.glob(spec_path))
    return [str(p)] if p.exists() else []


def _json_array(path: str, key: str | None = None) -> Iterator[tuple[int, Any] | Issue]:
    """Items of a json array (or of `obj[key]`) with the line each starts on; an Issue when unparsable."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        yield Issue(f"{path}:{exc.lineno}", "bad_json", f"invalid JSON ({exc.msg})")
        return
    except (OSError, UnicodeDecodeError) as exc:
        yield Issue(f"{path}:0", "bad_json", f"cannot read ({exc})")
        return
    if key is not None:
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            yield Issue(f"{path}:1", "missing_field", f"expected an object with a list '{key}'")
            return
        m = re.search(r'"%s"\s*:\s*\[' % re.escape(key), text)
        start = m.end() - 1 if m else None
    else:
        if not isinstance(data, list):
            yield Issue(f"{path}:1", "bad_value", "expected a JSON list of records")
            return
        start = text.index("[")
    items = data[key] if key is not None else data
    lines = _element_lines(text, start, len(items)) if start is not None else [0] * len(items)
    for line, item in zip(lines, items):
        yield line, item


def _element_lines(text: str, start: int, n: int) -> list[int]:
    """Line numbers of the `n` elements of the array whose '[' is at `start` (raw_decode walk)."""
    dec = json.JSONDecoder()
    ws = re.compile(r"[\s,]*")
    pos = ws.match(text, start + 1).end()
    line, last = 1 + text.count("\n", 0, pos), pos
    out = []
    for _ in range(n):
        line += text.count("\n", last, pos)
        last = pos
        out.append(line)
        _, end = dec.raw_decode(text, pos)
        pos = ws.match(text, end).end()
    return out


def _check_turns(conv: Any, where: str) -> tuple[tuple[dict[str, str], ...] | None, Issue | None]:
    if not isinstance(conv, list) or not conv:
        return None, Issue(where, "missing_field", "'conversations' must be a non-empty list")
    turns = []
    for k, t in enumerate(conv):
        if not isinstance(t, dict) or "from" not in t or "value" not in t or not isinstance(t["value"], str):
            return None, Issue(where, "missing_field", f"turn {k} needs string 'from' and 'value'")
        if t["from"] not in ("human", "gpt"):
            return None, Issue(where, "bad_value", f"turn {k}: 'from' must be 'human' or 'gpt', got {t['from']!r}")
        turns.append({"from": t["from"], "value": t["value"]})
    for k in range(1, len(turns)):
        if turns[k]["from"] == turns[k - 1]["from"]:
            return None, Issue(where, "not_alternating", f"turns {k - 1} and {k} are both from {turns[k]['from']!r}")
    if not any(t["from"] == "gpt" for t in turns):
        return None, Issue(where, "not_alternating", "no gpt (answer) turn")
    return tuple(turns), None


def _check_qa(qa: Any, where: str) -> tuple[tuple[dict[str, str], ...] | None, Issue | None]:
    if not isinstance(qa, list) or not qa:
        return None, Issue(where, "missing_field", "'QA' must be a non-empty list")
    for k, pair in enumerate(qa):
        if not isinstance(pair, dict) or not isinstance(pair.get("q"), str) or not isinstance(pair.get("a"), str):
            return None, Issue(where, "missing_field", f"QA pair {k} needs string 'q' and 'a'")
    return tuple({"q": p["q"], "a": p["a"]} for p in qa), None


def _check_caption(cap: Any, where: str) -> tuple[str | None, Issue | None]:
    if not isinstance(cap, str):
        return None, Issue(where, "missing_field", "missing string 'caption'")
    if not cap.strip():
        return None, Issue(where, "empty_caption", "caption is empty")
    return cap, None


def _text_fields(obj: dict, where: str) -> tuple[dict, Issue | None]:
    """caption / conversations / QA of a generic (jsonl, webdataset) record."""
    if "conversations" in obj:
        turns, issue = _check_turns(obj["conversations"], where)
        return {"turns": turns}, issue
    if "QA" in obj:
        qa, issue = _check_qa(obj["QA"], where)
        return {"qa": qa}, issue
    if "caption" in obj:
        cap, issue = _check_caption(obj["caption"], where)
        return {"caption": cap}, issue
    return {}, Issue(where, "missing_field", "needs 'caption', 'conversations' or 'QA'")


# ---------------------------------------------------------------------------------------------- readers
def _webvid(spec) -> Iterator[Record | Issue]:
    files = _files(spec.annotations, ("*.csv",))
    if not files:
        yield Issue(f"{spec.annotations}:0", "no_files", "no *.csv annotation files")
    for f in files:
        with open(f, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {"videoid", "page_dir", "name"} - set(reader.fieldnames or ())
            if missing:
                yield Issue(f"{f}:1", "missing_field", f"CSV header lacks {sorted(missing)}")
                continue
            for row in reader:
                where = f"{f}:{reader.line_num}"
                if not row.get("videoid") or not row.get("page_dir"):
                    yield Issue(where, "missing_field", "empty videoid or page_dir")
                    continue
                cap, issue = _check_caption(row.get("name"), where)
                if issue:
                    yield issue
                    continue
                yield Record(where, os.path.join(spec.media_root, row["page_dir"], row["videoid"] + ".mp4"),
                             "video", caption=cap)


def _cc_sbu(spec) -> Iterator[Record | Issue]:
    for item in _json_array(spec.annotations, "annotations"):
        if isinstance(item, Issue):
            yield item
            continue
        line, obj = item
        where = f"{spec.annotations}:{line}"
        if not isinstance(obj, dict) or not isinstance(obj.get("image_id"), str) or not obj["image_id"]:
            yield Issue(where, "missing_field", "missing string 'image_id'")
            continue
        cap, issue = _check_caption(obj.get("caption"), where)
        if issue:
            yield issue
            continue
        yield Record(where, os.path.join(spec.media_root, obj["image_id"] + ".jpg"), "image", caption=cap)


def _llava(spec) -> Iterator[Record | Issue]:
    for item in _json_array(spec.annotations):
        if isinstance(item, Issue):
            yield item
            continue
        line, obj = item
        where = f"{spec.annotations}:{line}"
        if not isinstance(obj, dict) or not isinstance(obj.get("image"), str) or not obj["image"]:
            yield Issue(where, "missing_field", "missing string 'image'")
            continue
        turns, issue = _check_turns(obj.get("conversations"), where)
        if issue:
            yield issue
            continue
        if not any("<image>" in t["value"] for t in turns):
            yield Issue(where, "missing_field", "no '<image>' placeholder in the conversations")
            continue
        path = os.path.join(spec.media_root, spec.image_path_prefix + obj["image"])
        yield Record(where, path, "image", turns=turns)


def _videochat(spec) -> Iterator[Record | Issue]:
    for item in _json_array(spec.annotations):
        if isinstance(item, Issue):
            yield item
            continue
        line, obj = item
        where = f"{spec.annotations}:{line}"
        if not isinstance(obj, dict) or not isinstance(obj.get("video"), str) or not obj["video"]:
            yield Issue(where, "missing_field", "missing string 'video'")
            continue
        qa, issue = _check_qa(obj.get("QA"), where)
        if issue:
            yield issue
            continue
        yield Record(where, os.path.join(spec.media_root, obj["video"]), "video", qa=qa)


def _generic_kind(obj: dict, name: str, where: str) -> tuple[str | None, Issue | None]:
    kind = obj.get("type") or media_kind(name)
    if kind not in ("video", "image"):
        return None, Issue(where, "bad_value", f"cannot tell whether {name!r} is a video or an image (set 'type')")
    return kind, None


def _jsonl(spec) -> Iterator[Record | Issue]:
    files = _files(spec.annotations, ("*.jsonl",))
    if not files:
        yield Issue(f"{spec.annotations}:0", "no_files", "no .jsonl annotation files")
    for f in files:
        with open(f, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                where = f"{f}:{n}"
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield Issue(where, "bad_json", f"invalid JSON ({exc.msg})")
                    continue
                if not isinstance(obj, dict) or not isinstance(obj.get("media"), str) or not obj["media"]:
                    yield Issue(where, "missing_field", "missing string 'media'")
                    continue
                kind, issue = _generic_kind(obj, obj["media"], where)
                fields, issue2 = _text_fields(obj, where) if issue is None else ({}, issue)
                if issue or issue2:
                    yield issue or issue2
                    continue
                yield Record(where, os.path.join(spec.media_root, obj["media"]), kind, **fields)


def _webdataset(spec) -> Iterator[Record | Issue]:
    files = _files(spec.annotations, ("*.tar",))
    if not files:
        yield Issue(f"{spec.annotations}:0", "no_files", "no .tar shards")
    for f in files:
        try:
            with tarfile.open(f, "r:") as tf:
                members = [m for m in tf.getmembers() if m.isfile()]
                groups: dict[str, dict[str, tarfile.TarInfo]] = {}
                order: list[str] = []
                for m in members:
                    d, base = os.path.split(m.name)
                    if "." not in base:
                        continue
                    stem, ext = base.split(".", 1)
                    key = os.path.join(d, stem)
                    if key not in groups:
                        groups[key] = {}
                        order.append(key)
                    groups[key][ext.lower()] = m
                for key in order:
                    where = f"{f}:{key}"
                    g = groups[key]
                    if "json" not in g:
                        yield Issue(where, "missing_field", "no .json member")
                        continue
                    media = [ext for ext in g if ext != "json" and media_kind("x." + ext)]
                    if len(media) != 1:
                        yield Issue(where, "missing_field", f"expected one media member, found {sorted(g)}")
                        continue
                    m = g[media[0]]
                    try:
                        obj = json.loads(tf.extractfile(g["json"]).read().decode("utf-8"))
                    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                        yield Issue(where, "bad_json", f"invalid JSON in {key}.json ({exc})")
                        continue
                    if not isinstance(obj, dict):
                        yield Issue(where, "bad_value", f"{key}.json is not an object")
                        continue
                    fields, issue = _text_fields(obj, where)
                    if issue:
                        yield issue
                        continue
                    kind = obj.get("type") or media_kind(m.name)
                    yield Record(where, f, kind, member=m.name, offset=m.offset_data, size=m.size,
                                 mtime=float(m.mtime), **fields)
        except (tarfile.TarError, OSError) as exc:
            yield Issue(f"{f}:0", "bad_value", f"unreadable tar shard ({exc})")


READERS = {"webvid": _webvid, "cc_sbu_align": _cc_sbu, "llava_instruct": _llava,
           "videochat_instruct": _videochat, "jsonl": _jsonl, "webdataset": _webdataset}


def read_records(spec) -> tuple[list[Record], list[Issue]]:
    """All records of a `DatasetSpec` and the issues found while reading them."""
    if spec.format not in READERS:
        raise ValueError(f"dataset '{spec.name}': unknown format {spec.format!r}")
    if spec.format in ("cc_sbu_align", "llava_instruct", "videochat_instruct") and not Path(spec.annotations).is_file():
        return [], [Issue(f"{spec.annotations}:0", "no_files", "annotation file not found")]
    records: list[Record] = []
    issues: list[Issue] = []
    for item in READERS[spec.format](spec):
        (issues if isinstance(item, Issue) else records).append(item)
    return records, issues


def split_mixed(spec, records: list[Record]) -> tuple[list[Record], list[Issue]]:
    """Generic formats (jsonl, webdataset): a dataset is one task and one media kind (a batch is stacked from one
    dataset), fixed by its first record; records of another task or kind become `bad_value` issues."""
    if spec.format not in ("jsonl", "webdataset") or not records:
        return records, []
    task = records[0].caption is not None
    kind = records[0].kind
    kept, issues = [], []
    for r in records:
        if (r.caption is not None) != task:
            issues.append(Issue(r.source, "bad_value", "mixes caption and conversation records in one dataset "
                                f"(its first record makes it a {'caption' if task else 'conversation'} dataset)"))
        elif r.kind != kind:
            issues.append(Issue(r.source, "bad_value", f"mixes images and videos in one dataset (its first record "
                                f"makes it a {kind} dataset); split them into two datasets"))
        else:
            kept.append(r)
    return kept, issues
