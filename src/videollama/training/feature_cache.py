"""Frozen-feature cache: the outputs of the frozen encoders per media file, so training skips them.

What is frozen (SPEC §1.2): for the VL branch, EVA ViT-g + `ln_vision` + the image Q-Former
(`VideoLLaMA.frame_features`, per frame (Q, Hq)); for the AL branch, the ImageBind vision trunk
(`VideoLLaMA.imagebind_frame_embeddings`, per frame (O,)). Both act on one frame at a time, so the cache stores
**per-frame** features keyed by (media file, frame index) and any frame sampling can be served from it.

Which frames are stored (decided per dataset, written in the index):
* ``uniform`` sampling (deterministic; always for ``videochat_instruct``, quirk 28): exactly the
  ``n_frames`` uniform indices - 8 entries per video, the cheap common case;
* ``headtail`` / ``random`` sampling: every ``frame_stride``-th decoded frame (default 1 = all frames). At
  train time the sampler then runs over the cached positions (identical indices to the uncached path when
  stride is 1; with stride S it samples from the sub-grid). Cost: VL ~32x768 values per frame (48 KiB in
  float16), so a 20 s / 30 fps clip is ~29 MiB at stride 1: choose a stride for long videos.
* images: one entry (frame 0).

Pixels are the **eval** transform (no RandomResizedCrop: the augmentation happens before the frozen encoder,
so it cannot be cached). Training from the cache therefore sees un-augmented frames - a documented
difference from the official recipe. With ``augment=False`` the uncached path uses the same eval pixels, and
the loss from a float32 cache equals the uncached loss to ~1e-6 (test_training_data checks 1e-4).
The "av" cache (`training.data.av_cache`, ``--views K``) can also store K **augmented views** per video: the
features of K fixed draws of the train transform, under ``view_key(key, k)`` (k = 1..K; the index's ``views``
says K). A training sample with augmentation on is then served one of the K + 1 views (the eval one included),
drawn from its own seed: a finite stand-in for the official per-step crops.

Storage: ``DIR/index.json`` + ``DIR/features-NNNNN.safetensors`` shards (one tensor per media file,
(F, Q, Hq) or (F, O), float32 or float16). Index entries are keyed ``"{dataset}/{path relative to media_root}"``
(webdataset: ``".../shard.tar#member"``) and record the file size and mtime: a changed file is a cache miss and
the dataset falls back to decoding pixels.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

INDEX_NAME = "index.json"
VERSION = 1

__all__ = ["FeatureCache", "FeatureCacheWriter", "CacheEntry", "cache_key", "media_stat", "frame_features_for",
           "view_key"]


@dataclass(frozen=True)
class CacheEntry:
    key: str
    shard: str
    tensor: str
    frames: tuple[int, ...]  # decoded-frame indices stored, in order (images: (0,))
    vlen: int
    fps: float


def cache_key(dataset: str, record, media_root: str) -> str:
    """Index key of a record's media: dataset name + path relative to media_root (+ '#member' for tar shards)."""
    rel = os.path.relpath(record.media, media_root).replace(os.sep, "/")
    return f"{dataset}/{rel}#{record.member}" if record.member else f"{dataset}/{rel}"


def view_key(key: str, view: int) -> str:
    """Index key of augmented view `view` (1..K) of the media stored under `key` (view 0 is `key` itself)."""
    return key if view == 0 else f"{key}@view{view}"


def media_stat(record) -> tuple[int, float] | None:
    """(size, mtime) that identifies the media's content version; None when the file is missing."""
    if record.member:
        return int(record.size), float(record.mtime)
    try:
        st = os.stat(record.media)
    except OSError:
        return None
    return int(st.st_size), float(st.st_mtime)


class FeatureCache:
    """Read side (safe in DataLoader workers: shard handles are opened lazily per process)."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        path = self.root / INDEX_NAME
        try:
            self.index = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise FileNotFoundError(f"{path}: not a feature cache ({exc})") from exc
        self.branch: str = self.index["branch"]
        self.dtype: str = self.index["dtype"]
        self.entries: dict[str, dict[str, Any]] = self.index["entries"]
        self.views: int = int(self.index.get("views", 0))  # augmented views per media besides the eval one
        self._handles: dict[str, Any] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.entries)

    def lookup(self, key: str, stat: tuple[int, float] | None) -> CacheEntry | None:
        """The entry for `key` if present and made from the same file version (size + mtime)."""
        e = self.entries.get(key)
        if e is None or stat is None:
            return None
        if int(e["size"]) != stat[0] or abs(float(e["mtime"]) - stat[1]) > 1e-3:
            log.warning("feature cache: %s changed since it was cached; decoding pixels instead", key)
            return None
        return CacheEntry(key, e["shard"], e["tensor"], tuple(e["frames"]), int(e["vlen"]), float(e["fps"]))

    def _handle(self, shard: str):
        from safetensors import safe_open

        if os.getpid() != self._pid:  # forked worker: do not share the parent's handles
            self._handles, self._pid = {}, os.getpid()
        h = self._handles.get(shard)
        if h is None:
            h = self._handles[shard] = safe_open(str(self.root / shard), framework="pt")
        return h

    def load(self, entry: CacheEntry, positions: list[int] | None = None) -> torch.Tensor:
        """float32 features of the stored frames at `positions` (indices into `entry.frames`; None = all)."""
        t = self._handle(entry.shard).get_tensor(entry.tensor)
        if positions is not None:
            t = t[torch.as_tensor(positions, dtype=torch.long)]
        return t.float()


class FeatureCacheWriter:
    """Append-only writer: existing entries are kept (and skipped by `has`); the index is rewritten per shard."""

    def __init__(self, root: str | os.PathLike[str], branch: str, dtype: str = "float32", model: str = "",
                 shard_bytes: int = 1 << 30):
        if dtype not in ("float32", "float16"):
            raise ValueError(f"dtype must be float32 or float16, got {dtype!r}")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.shard_bytes = shard_bytes
        self.torch_dtype = getattr(torch, dtype)
        path = self.root / INDEX_NAME
        if path.exists():
            self.index = json.loads(path.read_text())
            if self.index["branch"] != branch or self.index["dtype"] != dtype:
                raise ValueError(f"{path}: existing cache is branch={self.index['branch']} dtype={self.index['dtype']}, "
                                 f"asked for branch={branch} dtype={dtype}; use another --out")
        else:
            self.index = {"version": VERSION, "branch": branch, "dtype": dtype, "model": model, "shards": [],
                          "entries": {}}
        self._pending: dict[str, torch.Tensor] = {}
        self._pending_meta: dict[str, dict[str, Any]] = {}
        self._pending_bytes = 0

    def set_views(self, views: int) -> None:
        """Record that entries have `views` augmented views (written with the index at the next flush)."""
        self.index["views"] = max(int(self.index.get("views", 0)), int(views))

    def has(self, key: str, stat: tuple[int, float] | None) -> bool:
        e = self.index["entries"].get(key) or self._pending_meta.get(key)
        return bool(e and stat and int(e["size"]) == stat[0] and abs(float(e["mtime"]) - stat[1]) <= 1e-3)

    def add(self, key: str, features: torch.Tensor, frames: list[int], stat: tuple[int, float], vlen: int,
            fps: float) -> None:
        if features.shape[0] != len(frames):
            raise ValueError(f"{key}: {features.shape[0]} feature rows for {len(frames)} frames")
        name = f"e{len(self.index['entries']) + len(self._pending_meta):08d}"
        t = features.detach().to("cpu", self.torch_dtype).contiguous()
        self._pending[name] = t
        self._pending_meta[key] = {"tensor": name, "frames": [int(i) for i in frames], "size": stat[0],
                                   "mtime": stat[1], "vlen": int(vlen), "fps": float(fps)}
        self._pending_bytes += t.numel() * t.element_size()
        if self._pending_bytes >= self.shard_bytes:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        from safetensors.torch import save_file

        shard = f"features-{len(self.index['shards']):05d}.safetensors"
        tmp = self.root / (shard + ".tmp")
        save_file(self._pending, str(tmp))
        os.replace(tmp, self.root / shard)
        for meta in self._pending_meta.values():
            meta["shard"] = shard
        self.index["shards"].append(shard)
        self.index["entries"].update(self._pending_meta)
        self._pending, self._pending_meta, self._pending_bytes = {}, {}, 0
        self._write_index()

    def _write_index(self) -> None:
        tmp_index = self.root / (INDEX_NAME + ".tmp")
        tmp_index.write_text(json.dumps(self.index))
        os.replace(tmp_index, self.root / INDEX_NAME)

    def close(self) -> None:
        self.flush()
        self._write_index()  # also when nothing new was added (an empty cache, or only `views` changed)


@torch.no_grad()
def frame_features_for(model, branch: str, pixels: torch.Tensor) -> torch.Tensor:
    """Frozen features of normalised frames (3, T, H, W): VL -> (T, Q, Hq), AL -> (T, O)."""
    if branch == "vl":
        return model.frame_features(pixels.unsqueeze(0))[0]
    return model.imagebind_frame_embeddings(pixels.permute(1, 0, 2, 3).unsqueeze(0))[0]


def cached_frame_indices(spec, vlen: int, frame_stride: int = 1) -> list[int]:
    """Which decoded frames of a video the cache stores for this dataset (see the module doc)."""
    from videollama.media.sampling import uniform_indices

    if spec.format == "videochat_instruct" or spec.sampling == "uniform":
        return uniform_indices(vlen, spec.n_frames)
    return list(range(0, vlen, max(1, int(frame_stride))))


def build_feature_cache(recipe, model, out: str | os.PathLike[str], dtype: str = "float32", frame_stride: int = 1,
                        chunk_frames: int = 32, shard_bytes: int = 1 << 30, model_id: str = "",
                        progress=None) -> dict[str, dict[str, int]]:
    """Compute and store the frozen features of every media file of `recipe`'s datasets (eval transform).

    Already cached (same size + mtime) files are skipped, so an interrupted run can be resumed. Returns per
    dataset counts: cached / skipped_existing / failed (missing or unreadable media, logged).
    """
    import tempfile

    from videollama.errors import MediaError
    from videollama.media.image import open_rgb
    from videollama.media.normalize import normalize_frames
    from videollama.media.video import index_video, read_frames
    from videollama.training.data.records import read_records
    from videollama.training.data.transforms import image_eval_transform

    branch = recipe.branch
    writer = FeatureCacheWriter(out, branch, dtype, model=model_id, shard_bytes=shard_bytes)
    stats: dict[str, dict[str, int]] = {}
    model.eval()
    for spec in recipe.datasets:
        st = stats.setdefault(spec.name, {"cached": 0, "skipped_existing": 0, "failed": 0})
        records, _ = read_records(spec)
        done: set[str] = set()
        for rec in records:
            key = cache_key(spec.name, rec, spec.media_root)
            if key in done:
                continue
            done.add(key)
            stat = media_stat(rec)
            if stat is None:
                st["failed"] += 1
                log.warning("cache-features: %s: media file not found: %s", spec.name, rec.media)
                continue
            if writer.has(key, stat):
                st["skipped_existing"] += 1
                continue
            tmp = None
            try:
                path = rec.media
                if rec.member:
                    with open(rec.media, "rb") as fh:
                        fh.seek(rec.offset)
                        data = fh.read(rec.size)
                    fd, tmp = tempfile.mkstemp(suffix=os.path.splitext(rec.member)[1], prefix="vllama-cache-")
                    with os.fdopen(fd, "wb") as fo:
                        fo.write(data)
                    path = tmp
                if rec.kind == "image":
                    feats = frame_features_for(model, branch, image_eval_transform(open_rgb(path)))
                    writer.add(key, feats, [0], stat, 1, 1.0)
                else:
                    idx = index_video(path)
                    frames = cached_frame_indices(spec, idx.vlen, frame_stride)
                    if not frames:
                        raise MediaError(f"{rec.media_id}: video stream has no frames")
                    parts = []
                    for k in range(0, len(frames), chunk_frames):
                        px, _, _ = read_frames(path, frames[k:k + chunk_frames], idx)
                        parts.append(frame_features_for(model, branch, normalize_frames(px)).float().cpu())
                    writer.add(key, torch.cat(parts), frames, stat, idx.vlen, idx.avg_fps if idx.avg_fps > 0 else 1.0)
                st["cached"] += 1
            except MediaError as exc:
                st["failed"] += 1
                log.warning("cache-features: %s: %s", spec.name, str(exc).splitlines()[0])
            finally:
                if tmp:
                    os.unlink(tmp)
            if progress is not None:
                progress(spec.name, st)
    writer.close()
    return stats
