"""Frozen-feature cache for branch "av" (frames + real audio): `build_av_feature_cache(recipe, model, out)`.

Same on-disk format as `training.feature_cache` (index.json + safetensors shards, read by `FeatureCache`), with
``branch: "av"`` and two entries per video: ``"{dataset}/{path}"`` the per-frame frozen VL features
(`VideoLLaMA.frame_features`: EVA ViT + image Q-Former, (F, Q, Hq), F = the dataset's uniform frame indices,
eval transform) and ``"{dataset}/{path}#audio"`` the frozen ImageBind audio embeddings of its S clips
(`VideoLLaMA.audio_clip_embeddings` of `load_audio(path)`, (S, O)). A training sample is served from the cache only
when both entries are there and current (size + mtime); otherwise it decodes pixels and audio as usual.

    python -m videollama.training.data.av_cache RECIPE.yaml --out DIR [key=value ...]

(`videollama cache-features` handles the official branches; it has no "av" path yet.) Only uniform frame
sampling is cached (the videochat reader always samples uniformly; set ``sampling: uniform`` for webvid).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import torch

from videollama.training.data.records import read_records

log = logging.getLogger(__name__)

AUDIO_SUFFIX = "#audio"

__all__ = ["build_av_feature_cache", "AUDIO_SUFFIX"]


@torch.no_grad()
def build_av_feature_cache(recipe, model, out: str | os.PathLike[str], dtype: str = "float32", progress=None
                           ) -> dict[str, dict[str, int]]:
    from videollama.errors import MediaError
    from videollama.media.normalize import normalize_frames
    from videollama.media.sampling import uniform_indices
    from videollama.media.video import index_video, read_frames
    from videollama.training.data.dataset import load_training_audio
    from videollama.training.feature_cache import FeatureCacheWriter, cache_key, media_stat

    if recipe.branch != "av":
        raise ValueError(f"build_av_feature_cache is for branch 'av', the recipe trains {recipe.branch!r}")
    writer = FeatureCacheWriter(out, "av", dtype, model=str(recipe.model))
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
            if writer.has(key, stat) and writer.has(key + AUDIO_SUFFIX, stat):
                st["skipped_existing"] += 1
                continue
            try:
                idx = index_video(rec.media)
                frames = uniform_indices(idx.vlen, spec.n_frames)
                px, _, _ = read_frames(rec.media, frames, idx)
                feats = model.frame_features(normalize_frames(px).unsqueeze(0))[0]
                audio = load_training_audio(rec.media)
                emb = model.audio_clip_embeddings(audio.unsqueeze(0))[0]
            except MediaError as exc:
                st["failed"] += 1
                log.warning("av cache: %s: %s", spec.name, str(exc).splitlines()[0])
                continue
            fps = idx.avg_fps if idx.avg_fps > 0 else 1.0
            writer.add(key, feats, frames, stat, idx.vlen, fps)
            writer.add(key + AUDIO_SUFFIX, emb, list(range(emb.shape[0])), stat, idx.vlen, fps)
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
    a = ap.parse_args(argv)
    recipe = TrainRecipe.from_yaml(a.recipe, a.overrides)
    model = VideoLLaMA.from_pretrained(recipe.model)
    stats = build_av_feature_cache(recipe, model, a.out, a.dtype)
    for name, st in stats.items():
        print(f"{name}: {st}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
