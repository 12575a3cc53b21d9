"""What every task shares: the item record, annotation readers, media lookup and the Task interface."""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videollama.errors import ConfigError

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = ("", ".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".gif",
                    ".3gp", ".ts")


@dataclass
class EvalItem:
    """One benchmark question (or question pair) about one media file.

    `prompts` are the exact texts sent to the model, one answer each (two for a consistency pair); `answer` is the
    reference; `categories` name the breakdowns in the summary (e.g. {"type": "what"}); `meta` holds what the
    scorer needs (raw question, options, correct index, judge criteria...).
    """

    id: str
    media: str
    prompts: list[str]
    answer: str
    question: str
    categories: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoadedData:
    items: list[EvalItem]
    files: list[Path]  # every annotation file read (hashed into the results)
    missing: list[dict[str, str]] = field(default_factory=list)  # [{"id", "media"}] whose media was not found
    skipped: list[dict[str, str]] = field(default_factory=list)  # [{"id", "reason"}] unusable records


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Records of a .json (a list, or a dict of records keyed by id), .jsonl or .csv annotation file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: annotation file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with open(path, newline="", encoding="utf-8") as fh:
                return [dict(r) for r in csv.DictReader(fh)]
        if suffix == ".jsonl":
            out = []
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    rec = json.loads(line)
                    if not isinstance(rec, dict):
                        raise ConfigError(f"{path}:{n}: expected a JSON object per line")
                    out.append(rec)
            return out
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
    if isinstance(data, dict):
        # {"id": {...}} maps, or a wrapper like {"data": [...]}
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(data) == 1 and lists:
            data = lists[0]
        elif all(isinstance(v, dict) for v in data.values()):
            data = [{"id": k, **v} for k, v in data.items()]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ConfigError(f"{path}: expected a JSON list of objects")
    return data


def pick(record: dict[str, Any], *keys: str, default: Any = None) -> Any:
    """The first present, non-empty field among `keys`."""
    for k in keys:
        v = record.get(k)
        if v is not None and v != "":
            return v
    return default


class MediaResolver:
    """Finds a media file from an annotation's name: tries roots x prefixes x extensions, then a name index.

    The index (built on first need by walking the roots once) maps file names and stems to paths, so nested layouts
    (NExT-QA's `0000/2440175990.mp4`, MVBench's per-source folders) resolve without a mapping file. When a stem is
    ambiguous, the path that ends with the annotation's relative path wins; otherwise the name stays unresolved.
    """

    def __init__(self, roots: list[Path], prefixes: tuple[str, ...] = ("",), subdirs: tuple[str, ...] = ("",),
                 extensions: tuple[str, ...] = VIDEO_EXTENSIONS) -> None:
        self.roots = [Path(r) for r in roots]
        self.prefixes, self.subdirs, self.extensions = prefixes, subdirs, extensions
        self._index: dict[str, list[Path]] | None = None

    def resolve(self, name: str, subdirs: tuple[str, ...] = ()) -> Path | None:
        name = str(name).strip()
        if not name:
            return None
        p = Path(name)
        if p.is_absolute():
            return p if p.is_file() else self._lookup(p.name, name)
        rel_parent, base = p.parent, p.name
        for root in self.roots:
            for sub in (*subdirs, *self.subdirs):
                folder = root / sub / rel_parent
                for prefix in self.prefixes:
                    for ext in self.extensions:
                        cand = folder / f"{prefix}{base}{ext}"
                        if cand.is_file():
                            return cand
        return self._lookup(base, name)

    def _lookup(self, base: str, relative: str) -> Path | None:
        if self._index is None:
            self._index = {}
            for root in self.roots:
                if not root.is_dir():
                    continue
                for dirpath, _, files in os.walk(root, followlinks=True):
                    for f in files:
                        path = Path(dirpath) / f
                        self._index.setdefault(f, []).append(path)
                        stem = Path(f).stem
                        if stem != f:
                            self._index.setdefault(stem, []).append(path)
        for key in [f"{prefix}{base}" for prefix in self.prefixes] + [f"{prefix}{Path(base).stem}" for prefix in self.prefixes]:
            found = self._index.get(key) or []
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                rel = relative.replace("\\", "/")
                tail = [f for f in found if f.as_posix().endswith(rel)]
                if len(tail) == 1:
                    return tail[0]
                videos = [f for f in found if f.suffix.lower() in VIDEO_EXTENSIONS]
                if len(videos) == 1:
                    return videos[0]
                log.warning("%s: %d files match; leaving it unresolved", relative, len(found))
                return None
        return None


class Task:
    """A benchmark: how to read its annotations, what to ask, and how to score an answer.

    Subclasses set `name`, `description`, `scorer_kind` ("judge_optional": judge if given, else offline;
    "judge_required"; "offline": never uses a judge) and implement `load` and the scoring hooks.
    """

    name: str = ""
    description: str = ""
    scorer_kind: str = "offline"
    #: how a prediction record's categories are summarised, in display order
    breakdowns: tuple[str, ...] = ()

    def load(self, data: Path, media_root: Path | None, answers: Path | None = None) -> LoadedData:
        raise NotImplementedError

    def score_offline(self, item: EvalItem, predictions: list[str]) -> dict[str, Any]:
        """A verdict without a judge: {"correct": bool, "score": float | None, ...}."""
        raise NotImplementedError

    def judge_requests(self, item: EvalItem, predictions: list[str]) -> dict[str, list[dict[str, str]]]:
        """Judge requests for one item, by name (e.g. {"qa": messages} or one per criterion)."""
        raise NotImplementedError

    def score_judged(self, item: EvalItem, predictions: list[str], replies: dict[str, str]) -> dict[str, Any]:
        """A verdict from the judge's replies (same keys as `judge_requests`)."""
        raise NotImplementedError


def media_roots(data: Path, media_root: Path | None) -> list[Path]:
    """--media-root if given, else the annotation file's folder."""
    if media_root is not None:
        if not Path(media_root).is_dir():
            raise ConfigError(f"{media_root}: media root folder not found")
        return [Path(media_root)]
    return [data if data.is_dir() else data.parent]


def resolve_items(raw: list[tuple[EvalItem, str]], resolver: MediaResolver, files: list[Path],
                  subdirs_of=lambda item: ()) -> LoadedData:
    """Resolve each item's media name; unresolved ones are reported as missing (never silently dropped)."""
    seen: dict[str, int] = {}
    for item, _ in raw:  # duplicate ids (they happen in the wild) get a stable suffix: "id#2", "id#3"...
        n = seen.get(item.id, 0) + 1
        seen[item.id] = n
        if n > 1:
            log.warning("%s: duplicate question id %r renamed %r", files[0], item.id, f"{item.id}#{n}")
            item.id = f"{item.id}#{n}"
    items, missing = [], []
    for item, name in raw:
        path = resolver.resolve(name, subdirs_of(item))
        if path is None:
            missing.append({"id": item.id, "media": name})
            continue
        item.media = str(path)
        items.append(item)
    return LoadedData(items, files, missing)
