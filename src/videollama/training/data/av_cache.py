"""Frozen-feature cache for branch "av" (frames + real audio): `build_av_feature_cache(recipe, model, out)`.

Same on-disk format as `training.feature_cache` (index.json + safetensors shards, read by `FeatureCache`), with
``branch: "av"`` and two entries per video: ``"{dataset}/{path}"`` the per-frame frozen VL features
(`VideoLLaMA.frame_features`: EVA ViT + image Q-Former, (F, Q, Hq), F = the dataset's uniform frame indices,
eval transform) and ``"{dataset}/{path}#audio"`` the frozen ImageBind audio embeddings of its S clips
(`VideoLLaMA.audio_clip_embeddings` of `load_audio(path)`, (S, O)). A training sample is served from the cache only
when both entries are there and current (size + mtime); otherwise it decodes pixels and audio as usual.

``views=K`` (``--views K``) also stores K augmented views of each video's frames: the train transform
(`video_train_transform`, one RandomResizedCrop box per clip, as the official VideoChat and WebVid datasets apply
every step) with K fixed draws seeded from the video's key, under `feature_cache.view_key(key, k)`. The audio is
not augmented (officially neither), so all views share the audio entry. Training with augmentation serves each
sample one of the K + 1 views (`TrainingDataset`); with ``augment=False`` only the eval one.

    python -m videollama.training.data.av_cache RECIPE.yaml --out DIR [--views K] [key=value ...]

(`videollama cache-features` handles the official branches; it has no "av" path yet.) Only uniform frame
sampling is cached (the videochat reader always samples uniformly; set ``sampling: uniform`` for webvid).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import zlib

import torch

from videollama.training.data.records import read_records

log = logging.getLogger(__name__)

AUDIO_SUFFIX = "#audio"

__all__ = ["build_av_feature_cache", "view_generator", "AUDIO_SUFFIX"]


def view_generator(key: str, view: int) -> torch.Generator:
    """The random stream of augmented view `view` of the video cached under `key`: the same draw on every run."""
    return torch.Generator().manual_seed(zlib.crc32(key.encode()) * 1000 + int(view))


@torch.no_grad()
def build_av_feature_cache(recipe, model, out: str | os.PathLike[str], dtype: str = "float32", progress=None,
                           views: int = 0) -> dict[str, dict[str, int]]:
    """Cache every video's frozen frame features (eval transform, + `views` augmented views) and audio embeddings.

    Entries already there (same size + mtime) are skipped, so a run can be resumed or given more views later.
    Returns per dataset counts: cached / skipped_existing / failed (missing or unreadable media, logged).
    """
    from videollama.errors import MediaError
    from videollama.media.normalize import normalize_frames
    from videollama.media.sampling import uniform_indices
    from videollama.media.video import index_video, read_frames
    from videollama.training.data.dataset import load_training_audio
    from videollama.training.data.transforms import video_train_transform
    from videollama.training.feature_cache import FeatureCacheWriter, cache_key, media_stat, view_key

    if views < 0:
        raise ValueError(f"views must be >= 0, got {views}")
    if recipe.branch != "av":
        raise ValueError(f"build_av_feature_cache is for branch 'av', the recipe trains {recipe.branch!r}")
    writer = FeatureCacheWriter(out, "av", dtype, model=str(recipe.model))
    writer.set_views(views)
    stats: dict[str, dict[str, int]] = {}
    model.eval()
    for spec in recipe.datasets:
        st = stats.setdefault(spec.name, {"cached": 0, "skipped_existing": 0, "failed": 0})
        if spec.format != "videochat_instruct" and spec.sampling != "uniform":
            raise ValueError(f"dataset {spec.name}: the av cache stores uniform frames only (sampling: uniform)")
        records, _ = read_records(spec)
        done: set[str] = set()
        for rec in records:
            key = cache_key(spec.name, rec, spec.media_root)
            if key in done or rec.kind != "video" or rec.member:
                continue
            done.add(key)
            stat = media_stat(rec)
            if stat is None:
                st["failed"] += 1
                continue
            todo = [k for k in range(1, views + 1) if not writer.has(view_key(key, k), stat)]
            base = writer.has(key, stat) and writer.has(key + AUDIO_SUFFIX, stat)
            if base and not todo:
                st["skipped_existing"] += 1
                continue
            try:
                idx = index_video(rec.media)
                frames = uniform_indices(idx.vlen, spec.n_frames)
                px, _, _ = read_frames(rec.media, frames, idx)
                fps = idx.avg_fps if idx.avg_fps > 0 else 1.0
                if not base:
                    feats = model.frame_features(normalize_frames(px).unsqueeze(0))[0]
                    emb = model.audio_clip_embeddings(load_training_audio(rec.media).unsqueeze(0))[0]
                    writer.add(key, feats, frames, stat, idx.vlen, fps)
                    writer.add(key + AUDIO_SUFFIX, emb, list(range(emb.shape[0])), stat, idx.vlen, fps)
                for k in todo:
                    feats = model.frame_features(video_train_transform(px, view_generator(key, k)).unsqueeze(0))[0]
                    writer.add(view_key(key, k), feats, frames, stat, idx.vlen, fps)
            except MediaError as exc:
                st["failed"] += 1
                log.warning("av cache: %s: %s", spec.name, str(exc).splitlines()[0])
                continue
            st["cached"] += 1
            if progress is not None:
                progress(spec.name, st)
    writer.close()
    return stats


def main(argv: list[str] | None = None) -> int:
    from videollama.model.videollama import VideoLLaMA
    from videollama.training.recipe import TrainRecipe

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe")
    ap.add_argument("overrides", nargs="*", help="key=value recipe overrides")
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", default="float32", choices=("float32", "float16"))
    ap.add_argument("--views", type=int, default=0, help="augmented views per video besides the eval one (default 0)")
    a = ap.parse_args(argv)
    recipe = TrainRecipe.from_yaml(a.recipe, a.overrides)
    model = VideoLLaMA.from_pretrained(recipe.model)
    stats = build_av_feature_cache(recipe, model, a.out, a.dtype, views=a.views)
    for name, st in stats.items():
        print(f"{name}: {st}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
