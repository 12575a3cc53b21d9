"""`build_training_data(recipe, tokenizer, model_config)`: datasets, collation and the resumable batch stream."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch

from videollama.text.instruct import load_caption_prompts, prompt_wrap_ids, tokenize_captions
from videollama.text.instruct import collate_instruct
from videollama.training.data.dataset import Skipped, SkipCounter, TrainingDataset
from videollama.training.data.mixture import MixturePlan
from videollama.training.data.records import Issue, read_records, split_mixed
from videollama.training.objective import TokenIds

log = logging.getLogger(__name__)

__all__ = ["TrainingData", "BatchIterator", "build_training_data", "num_media_tokens", "num_audio_tokens"]

MEDIA_KEYS = ("pixel_values", "frame_features", "imagebind_embeds")


def num_media_tokens(model_config, branch: str) -> int:
    """`<ImageHere>` count per media in instruct text: video Q-Former queries (32) for VL and for the video run
    of AV, audio (8) for AL (AV's audio run: `num_audio_tokens`)."""
    q = model_config.video_qformer if branch in ("vl", "av") else model_config.audio_qformer
    if q is None:
        raise ValueError(f"branch {branch!r}: the model config has no {'video' if branch == 'vl' else 'audio'} Q-Former")
    return int(q.num_query_tokens)


def num_audio_tokens(model_config) -> int:
    """The audio run's `<ImageHere>` count (audio Q-Former queries) for branch "av"."""
    if model_config.audio_qformer is None:
        raise ValueError("branch 'av': the model config has no audio Q-Former")
    return int(model_config.audio_qformer.num_query_tokens)


@dataclass
class TrainingData:
    """Everything the engine needs from the data side.

    * `datasets[name]`: map-style `TrainingDataset` (`__getitem__` -> sample dict or None);
    * `weights[name]`: the mixture weight (`sample_ratio`);
    * `collate(samples)`: one dataset's samples -> batch dict (objective.py format) + ``dataset``, ``size``,
      ``skipped`` (list of dicts), ``indices``; Nones / `Skipped` are dropped;
    * `batches(...)`: the infinite, resumable mixture stream (a `BatchIterator`);
    * `token_ids`: `TokenIds(bos, pad=unk, media=<ImageHere>)` for `objective.batch_loss` - the pad id the
      collate used (official: unk = 0);
    * `skips`: main-process `SkipCounter` (annotation issues at build + every skip seen by `batches()`);
    * `issues[name]`: the annotation `Issue`s (file:line) left out at build.
    """

    recipe: Any
    tokenizer: Any
    branch: str
    datasets: dict[str, TrainingDataset]
    weights: dict[str, float]
    token_ids: TokenIds
    prompts: dict[str, list[tuple[list[int], list[int]]]] = field(default_factory=dict)
    issues: dict[str, list[Issue]] = field(default_factory=dict)
    skips: SkipCounter = field(default_factory=SkipCounter)

    @property
    def batch_size(self) -> int:
        return int(self.recipe.optim.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """For plain per-dataset DataLoaders only; `batches()` passes epochs explicitly."""
        for ds in self.datasets.values():
            ds.set_epoch(epoch)

    # ------------------------------------------------------------------------------------------ collation
    def collate(self, samples: Sequence[dict | Skipped | None]) -> dict[str, Any]:
        """Batch of ONE dataset's samples (official: a batch never mixes datasets)."""
        skipped = [s.as_dict() for s in samples if isinstance(s, Skipped)]
        good = [s for s in samples if isinstance(s, dict)]
        batch: dict[str, Any] = {"size": len(good), "skipped": skipped}
        if not good:
            return batch
        names = {s["dataset"] for s in good}
        if len(names) != 1:
            raise ValueError(f"a batch must come from one dataset, got {sorted(names)}")
        name = names.pop()
        ds = self.datasets[name]
        keys = {next(k for k in MEDIA_KEYS if k in s) for s in good}
        if len(keys) > 1:  # cache hits and misses in one batch: decode pixels for the hits too
            fixed = []
            for s in good:
                if "pixel_values" in s:
                    fixed.append(s)
                    continue
                again = ds.load(s["index"], epoch=s.get("epoch"), force_pixels=True)
                if isinstance(again, Skipped):
                    skipped.append(again.as_dict())
                else:
                    again["epoch"] = s.get("epoch")
                    fixed.append(again)
            good = fixed
            batch["size"] = len(good)
            if not good:
                return batch
            keys = {"pixel_values"}
        key = keys.pop()
        batch.update(task=ds.task, dataset=name, indices=[s["index"] for s in good],
                     sources=[s["source"] for s in good])
        batch[key] = torch.stack([s[key] for s in good])
        for audio_key in ("audio_values", "audio_embeds"):  # branch "av": raw clips, or cached with the frames
            if audio_key in good[0]:
                batch[audio_key] = torch.stack([s[audio_key] for s in good])
        pad = self.token_ids.pad
        if ds.task == "caption":
            spec = ds.spec
            batch["text_ids"], batch["text_mask"] = tokenize_captions(
                [s["caption"] for s in good], self.tokenizer, end_sym=spec.end_sym, max_txt_len=spec.max_txt_len,
                pad_id=pad)
            prompts = self.prompts.get(name)
            if prompts:  # one random prompt for the whole batch (official), seeded by its first sample
                batch["prompt_ids"] = random.Random(good[0]["seed"]).choice(prompts)
        else:
            batch.update(collate_instruct(good, pad_id=pad))
        return batch

    # ------------------------------------------------------------------------------------------ mixture
    def plan(self, rank: int = 0, world_size: int = 1, seed: int | None = None) -> MixturePlan:
        names = list(self.datasets)
        lengths = [self.datasets[n].text_lengths() for n in names] if self.recipe.group_by_length else None
        return MixturePlan(names, [len(self.datasets[n]) for n in names], [self.weights[n] for n in names],
                           self.batch_size, self.recipe.seed if seed is None else seed, rank, world_size,
                           sample_lengths=lengths)

    def batch_at(self, step: int, plan: MixturePlan) -> dict[str, Any]:
        """The collated batch of `step` (pure function of seed, step, rank, world_size and the data)."""
        d, items = plan.batch_at(step)
        ds = self.datasets[plan.names[d]]
        samples = []
        for index, epoch in items:
            s = ds.load(index, epoch=epoch)
            if isinstance(s, dict):
                s["epoch"] = epoch
            samples.append(s)
        batch = self.collate(samples)
        batch.setdefault("dataset", ds.name)
        batch.setdefault("task", ds.task)
        batch["step"] = step
        return batch

    def batches(self, start_step: int = 0, num_steps: int | None = None, rank: int = 0, world_size: int = 1,
                num_workers: int | None = None, seed: int | None = None, prefetch_factor: int = 2) -> BatchIterator:
        """Infinite (or `num_steps`) stream of collated batches from `start_step`, optionally with workers."""
        return BatchIterator(self, self.plan(rank, world_size, seed), start_step, num_steps,
                             self.recipe.num_workers if num_workers is None else num_workers, prefetch_factor)


class _StepDataset(torch.utils.data.Dataset):
    """Item s = the whole collated batch of step s, so DataLoader workers build batches in parallel."""

    def __init__(self, data: TrainingData, plan: MixturePlan):
        self.data, self.plan = data, plan

    def __len__(self) -> int:
        return 1 << 62

    def __getitem__(self, step: int) -> dict[str, Any]:
        return self.data.batch_at(int(step), self.plan)


class _Steps(torch.utils.data.Sampler):
    def __init__(self, start: int, stop: int | None):
        self.start, self.stop = start, stop

    def __iter__(self):
        s = self.start
        while self.stop is None or s < self.stop:
            yield s
            s += 1


class BatchIterator:
    """Iterate batches; `state_dict()` / `load_state_dict()` (call before iterating) give exact resume.

    The state is just the next step (+ skip counts): the stream is a pure function of (seed, step, rank,
    world_size). Batches with ``size == 0`` (every sample skipped) are still yielded - skip the optimiser step.
    """

    def __init__(self, data: TrainingData, plan: MixturePlan, start_step: int, num_steps: int | None,
                 num_workers: int, prefetch_factor: int = 2):
        self.data, self.plan = data, plan
        self.step = int(start_step)
        self.num_steps = num_steps
        self.num_workers = int(num_workers)
        self.prefetch_factor = prefetch_factor

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "seed": self.plan.seed, "world_size": self.plan.world_size,
                "skips": self.data.skips.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("seed", self.plan.seed) != self.plan.seed:
            log.warning("data resume: seed %s in the state differs from %s", state.get("seed"), self.plan.seed)
        if state.get("world_size", self.plan.world_size) != self.plan.world_size:
            log.warning("data resume: world_size changed (%s -> %s): the sample streams differ from the saved run",
                        state.get("world_size"), self.plan.world_size)
        self.step = int(state["step"])
        if "skips" in state:
            self.data.skips.load_state_dict(state["skips"])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        stop = None if self.num_steps is None else self.step + self.num_steps
        if self.num_workers <= 0:
            gen = (self.data.batch_at(s, self.plan) for s in _Steps(self.step, stop))
        else:
            gen = iter(torch.utils.data.DataLoader(
                _StepDataset(self.data, self.plan), batch_size=None, sampler=_Steps(self.step, stop),
                num_workers=self.num_workers, collate_fn=lambda x: x, prefetch_factor=self.prefetch_factor))
        for batch in gen:
            self.data.skips.add_skipped(batch.get("skipped", ()))
            self.step = batch["step"] + 1
            yield batch


def build_training_data(recipe, tokenizer, model_config, feature_cache=None, *, augment: bool = True,
                        counter: SkipCounter | None = None) -> TrainingData:
    """Read every dataset of `recipe` and make the `TrainingData`.

    `feature_cache`: a `FeatureCache`, a cache folder, None (use `recipe.feature_cache` when set) or False (never).
    `augment=False` replaces the train transforms by the eval ones (deterministic; what the cache stores).
    """
    from videollama.training.feature_cache import FeatureCache

    if feature_cache is None and recipe.feature_cache:
        feature_cache = recipe.feature_cache
    if feature_cache is False:
        feature_cache = None
    if isinstance(feature_cache, (str, bytes)) or hasattr(feature_cache, "__fspath__"):
        feature_cache = FeatureCache(feature_cache)
    if feature_cache is not None and feature_cache.branch != recipe.branch:
        raise ValueError(f"feature cache {feature_cache.root} is for branch {feature_cache.branch}, "
                         f"recipe trains {recipe.branch}")
    counter = counter if counter is not None else SkipCounter()
    n_media = num_media_tokens(model_config, recipe.branch)
    n_audio = num_audio_tokens(model_config) if recipe.branch == "av" else 0
    token_ids = TokenIds.from_tokenizer(tokenizer)
    datasets: dict[str, TrainingDataset] = {}
    weights: dict[str, float] = {}
    prompts: dict[str, list] = {}
    issues: dict[str, list[Issue]] = {}
    for spec in recipe.datasets:
        records, found = read_records(spec)
        records, mixed = split_mixed(spec, records)
        found = found + mixed
        ds = TrainingDataset(spec, records, tokenizer=tokenizer, template=recipe.template, branch=recipe.branch,
                             num_media_tokens=n_media, instruct_max_len=recipe.instruct_max_len, seed=recipe.seed,
                             augment=augment, feature_cache=feature_cache, counter=counter, num_audio_tokens=n_audio)
        for issue in found:
            counter.add(spec.name, issue.reason, issue.source)
        if found:
            log.warning("dataset %s: %d malformed annotation record(s) left out, e.g. %s", spec.name, len(found),
                        "; ".join(str(i) for i in found[:3]))
        if not ds.records:
            raise ValueError(f"dataset '{spec.name}': no usable records in {spec.annotations}")
        if ds.task == "caption" and spec.prompts:
            lines = load_caption_prompts(spec.prompts, spec.prompt_template)
            if not lines:
                raise ValueError(f"dataset '{spec.name}': no prompt line with <ImageHere> in {spec.prompts}")
            prompts[spec.name] = [prompt_wrap_ids(p, tokenizer) for p in lines]
        datasets[spec.name], weights[spec.name], issues[spec.name] = ds, float(spec.sample_ratio), found
        log.info("dataset %s: %d records (%s, %s)", spec.name, len(ds.records), spec.format, ds.task)
    return TrainingData(recipe=recipe, tokenizer=tokenizer, branch=recipe.branch, datasets=datasets, weights=weights,
                        token_ids=token_ids, prompts=prompts, issues=issues, skips=counter)
