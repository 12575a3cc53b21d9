"""Map-style training dataset: one `DatasetSpec`'s records -> per-sample media tensors + text (SPEC §5.3).

Bad samples (quirk 29 FIX): `load(i)` returns a `Skipped(dataset, reason, source, message)` instead of raising,
and logs one line; `__getitem__` returns None for it (the collate drops Nones). Reasons:
``missing_media`` (MediaNotFoundError), ``corrupt_media`` (any other MediaError / decoder failure),
``too_short`` (fewer decodable frames than ``n_frames``; official WebVid rejects any clip that is not 8 frames),
``malformed`` (text cannot be built, e.g. non-alternating llama_2 turns), ``no_audio`` (branch "av" only: the
media has no usable audio track - an image, a video without an audio stream, or one shorter than 25 ms; such a
sample is left out rather than trained on silence or with a video-only prompt, see "Audio"), ``truncated``
(instruct text cut inside the media placeholders at ``instruct_max_len``), ``unexpected_error`` (anything else;
logged with the traceback). There is no random substitute: the batch just gets smaller. Records that are
malformed in the annotation file never reach the dataset (`records.Issue`, counted once at build time).

Audio (branch "av", our extension): every video sample also carries its real audio, ``audio_values``
(S=8, 1, 128, 204) ImageBind fbank clips from `load_audio(path)` (the inference loader, so train and inference
see the same clips). Instruction text uses the official audio+video first turn (`VIDEO_AUDIO_FIRST_TURN`, what
`Chat.upload_video_with_audio` / our pipeline sends): its first `<ImageHere>` becomes the audio run (audio
Q-Former queries, 8) and its second the video run (video queries, 32), then the first question joined with one
space (as `Chat.ask`), with the empty system text the pipeline uses for audio+video (llama_2) - so training and
inference prompts are the same. Captions are unchanged (the objective puts [audio, video] tokens in the
caption prompt's one `<ImageHere>`). Branches "vl" / "al" are untouched (official paths).

Instruct texts are tokenised once per record (and timestamp message) and kept in a bounded memo
(`TextMemo`): a run passes over the same records many times, and their text never changes.

Reproducibility: every sample's randomness (frame sampling, crop box, caption prompt) comes from
`sample_seed(seed, dataset, epoch, index)`, so a sample is the same whoever loads it and whenever.
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
import threading
from array import array
from collections import Counter, OrderedDict
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

import torch

from videollama.errors import MediaError, MediaNotFoundError, NoAudioError
from videollama.media import sampling as _sampling
from videollama.media.image import open_rgb
from videollama.media.normalize import normalize_frames
from videollama.media.video import index_video, read_frames, sample_indices
from videollama.text import IMAGE_PLACEHOLDER, blip_caption, build_instruct_sample, llava_instruct_turns, video_instruct_turns
from videollama.text.instruct import build_llama2_sample
from videollama.text.templates import VIDEO_AUDIO_FIRST_TURN
from videollama.training.data.records import Record
from videollama.training.data.transforms import image_eval_transform, image_train_transform, video_train_transform

log = logging.getLogger(__name__)

__all__ = ["Skipped", "SkipCounter", "TextMemo", "TrainingDataset", "sample_seed", "dataset_task",
           "audio_video_first_turn", "load_training_audio"]

CAPTION_FORMATS = ("webvid", "cc_sbu_align")
INSTRUCT_FORMATS = ("llava_instruct", "videochat_instruct")


def sample_seed(seed: int, dataset: str, epoch: int, index: int) -> int:
    """63-bit seed of one sample, a pure function of (run seed, dataset name, epoch, index)."""
    h = blake2b(f"{seed}|{dataset}|{epoch}|{index}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


class TextMemo:
    """Least-recently-used store of built instruct texts (input_ids, labels), bounded by the tokens it holds.

    Hand-written: functools.lru_cache bounds entries, not memory, and this is a dozen lines. Token ids are kept
    as int32 arrays (8 bytes a token for ids + labels), so the default bound of 16M tokens is about 128 MB.
    """

    def __init__(self, max_tokens: int = 16_000_000):
        self.max_tokens = int(max_tokens)
        self.tokens = 0
        self._items: OrderedDict[Any, tuple[array, array]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Any) -> dict[str, list[int]] | None:
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return {"input_ids": item[0].tolist(), "labels": item[1].tolist()}

    def put(self, key: Any, text: dict[str, list[int]]) -> None:
        n = len(text["input_ids"])
        if n > self.max_tokens or key in self._items:
            return
        self._items[key] = (array("i", text["input_ids"]), array("i", text["labels"]))
        self.tokens += n
        while self.tokens > self.max_tokens:
            _, (ids, _) = self._items.popitem(last=False)
            self.tokens -= len(ids)


@dataclass(frozen=True)
class Skipped:
    """A sample that was left out, and why."""

    dataset: str
    reason: str
    source: str
    message: str

    def __bool__(self) -> bool:  # so `if sample:` treats it like None
        return False

    def as_dict(self) -> dict[str, str]:
        return {"dataset": self.dataset, "reason": self.reason, "source": self.source, "message": self.message}


class SkipCounter:
    """Counts of skipped samples per (dataset, reason), with the first few sources of each (thread-safe).

    Each process has its own; DataLoader workers send their skips back inside each batch (`batch["skipped"]`)
    and `BatchIterator` adds them to the main process's counter, so nothing is lost with workers.
    """

    def __init__(self, keep_examples: int = 5):
        self.counts: Counter[tuple[str, str]] = Counter()
        self.examples: dict[tuple[str, str], list[str]] = {}
        self.keep = keep_examples
        self._lock = threading.Lock()

    def add(self, dataset: str, reason: str, source: str = "", n: int = 1) -> None:
        with self._lock:
            self.counts[(dataset, reason)] += n
            ex = self.examples.setdefault((dataset, reason), [])
            if source and len(ex) < self.keep:
                ex.append(source)

    def add_skipped(self, items) -> None:
        for s in items:
            d = s.as_dict() if isinstance(s, Skipped) else s
            self.add(d["dataset"], d["reason"], d.get("source", ""))

    def total(self, dataset: str | None = None) -> int:
        return sum(n for (d, _), n in self.counts.items() if dataset is None or d == dataset)

    def as_dict(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (d, r), n in sorted(self.counts.items()):
            out.setdefault(d, {})[r] = n
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"counts": [[d, r, n] for (d, r), n in self.counts.items()]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.counts = Counter({(d, r): n for d, r, n in state.get("counts", [])})


def audio_video_first_turn(n_audio: int, n_video: int) -> str:
    """The official audio+video first user message with its two `<ImageHere>` expanded: audio run, then video run."""
    head, mid, tail = VIDEO_AUDIO_FIRST_TURN.split(IMAGE_PLACEHOLDER)
    return head + IMAGE_PLACEHOLDER * n_audio + mid + IMAGE_PLACEHOLDER * n_video + tail


def load_training_audio(path: str) -> torch.Tensor:
    """(S, 1, 128, 204) ImageBind fbank clips of a file's audio track (the inference loader); NoAudioError if none."""
    from videollama.media.audio import load_audio

    return load_audio(path).tensor[0]


def dataset_task(spec, records: list[Record]) -> str:
    """'caption' or 'instruct' for a dataset (generic formats: from their first record)."""
    if spec.format in CAPTION_FORMATS:
        return "caption"
    if spec.format in INSTRUCT_FORMATS:
        return "instruct"
    if not records:
        return "caption"
    return "caption" if records[0].caption is not None else "instruct"


class TrainingDataset(torch.utils.data.Dataset):
    """One training dataset. `load(i)` -> sample dict or `Skipped`; `__getitem__(i)` -> sample dict or None.

    A sample dict: ``task``, ``dataset``, ``index``, ``seed``, ``source``, one media key (``pixel_values``
    (3, T, H, W) float32, or from the cache ``frame_features`` (T, Q, Hq) / ``imagebind_embeds`` (T, O)), and
    ``caption`` (str) for the caption task or ``input_ids`` / ``labels`` (lists) for the instruct task.
    """

    def __init__(self, spec, records: list[Record], *, tokenizer, template: str, branch: str, num_media_tokens: int,
                 instruct_max_len: int = 512, seed: int = 42, augment: bool = True, feature_cache=None,
                 counter: SkipCounter | None = None, num_audio_tokens: int = 0):
        self.spec = spec
        self.name = spec.name
        self.records = records
        self.tokenizer = tokenizer
        self.template = template
        self.branch = branch
        self.num_media_tokens = int(num_media_tokens)  # the video (or image / AL audio) run
        self.with_audio = branch == "av"  # real audio + the audio+video prompt (see the module doc)
        self.num_audio_tokens = int(num_audio_tokens)
        self._cached_audio: torch.Tensor | None = None  # set by _from_cache (av) for the sample being loaded
        if self.with_audio and self.num_audio_tokens < 1:
            raise ValueError("branch 'av' needs num_audio_tokens (the audio Q-Former's query count)")
        self.instruct_max_len = int(instruct_max_len)
        self.seed = int(seed)
        self.augment = augment
        self.cache = feature_cache
        self.counter = counter if counter is not None else SkipCounter()
        self.task = dataset_task(spec, records)
        self.epoch = 0
        # VideoChat ignores its configured processor: uniform sampling + timestamps, train transform (quirk 28).
        self.sampling = "uniform" if spec.format == "videochat_instruct" else spec.sampling
        self.media_token_id = tokenizer.image_token_id
        self.text_memo = TextMemo()

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def text_lengths(self) -> list[int]:
        """Each record's text length in characters (caption, or every turn): the length-grouping key, read
        without tokenizing (a proxy for the token count, which only the order of lengths needs)."""
        def chars(rec: Record) -> int:
            if rec.qa is not None:
                return sum(len(p["q"]) + len(p["a"]) for p in rec.qa)
            if rec.turns is not None:
                return sum(len(t["value"]) for t in rec.turns)
            return len(rec.caption or "")
        return [chars(rec) for rec in self.records]

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        out = self.load(index)
        return out if isinstance(out, dict) else None

    # ------------------------------------------------------------------------------------------ loading
    def load(self, index: int, epoch: int | None = None, force_pixels: bool = False) -> dict[str, Any] | Skipped:
        rec = self.records[index]
        seed = sample_seed(self.seed, self.name, self.epoch if epoch is None else epoch, index)
        try:
            key, media, indices, fps = self._media(rec, seed, force_pixels)
            audio_key, audio = "audio_values", None
            if self.with_audio:
                if key == "frame_features":  # served from the av cache: its audio entry too (checked there)
                    audio_key, audio, self._cached_audio = "audio_embeds", self._cached_audio, None
                else:
                    audio = self._audio(rec)
            text = self._text(index, rec, indices, fps)
        except _Skip as s:
            return self._skip(s.reason, rec, s.message)
        except MediaNotFoundError as exc:
            return self._skip("missing_media", rec, str(exc))
        except NoAudioError as exc:
            return self._skip("no_audio", rec, str(exc))
        except MediaError as exc:
            return self._skip("corrupt_media", rec, str(exc))
        except Exception as exc:  # noqa: BLE001 - counted + logged with traceback, never silent
            log.exception("dataset %s: unexpected error on %s", self.name, rec.source)
            return self._skip("unexpected_error", rec, f"{type(exc).__name__}: {exc}")
        out = {"task": self.task, "dataset": self.name, "index": index, "seed": seed, "source": rec.source,
               key: media, **text}
        if audio is not None:
            out[audio_key] = audio
        return out

    def _skip(self, reason: str, rec: Record, message: str) -> Skipped:
        s = Skipped(self.name, reason, rec.source, message.splitlines()[0] if message else "")
        self.counter.add(self.name, reason, rec.source)
        log.warning("skip %s sample %s (%s): %s", self.name, rec.source, reason, s.message)
        return s

    def _audio(self, rec: Record) -> torch.Tensor:
        """Branch "av": the record's real audio clips (S, 1, 128, 204); images have none (skipped: no_audio)."""
        if rec.kind != "video":
            raise NoAudioError(f"{rec.media}: an image has no audio (branch 'av' trains on videos with sound)")
        if rec.member:
            ext = os.path.splitext(rec.member)[1]
            with open(rec.media, "rb") as fh:
                fh.seek(rec.offset)
                data = fh.read(rec.size)
            fd, tmp = tempfile.mkstemp(suffix=ext, prefix="vllama-wds-")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                return load_training_audio(tmp)
            finally:
                os.unlink(tmp)
        return load_training_audio(rec.media)

    def _media(self, rec: Record, seed: int, force_pixels: bool):
        """-> (batch key, tensor, frame indices, fps)."""
        if self.cache is not None and not force_pixels:
            got = self._from_cache(rec, seed)
            if got is not None:
                return got
        if rec.member:
            return self._tar_media(rec, seed)
        return self._pixels(rec.media, rec, seed)

    def _tar_media(self, rec: Record, seed: int):
        ext = os.path.splitext(rec.member)[1]
        with open(rec.media, "rb") as fh:
            fh.seek(rec.offset)
            data = fh.read(rec.size)
        if len(data) != rec.size:
            raise _Skip("corrupt_media", f"{rec.media}: member {rec.member} is truncated")
        fd, tmp = tempfile.mkstemp(suffix=ext, prefix="vllama-wds-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            return self._pixels(tmp, rec, seed)
        finally:
            os.unlink(tmp)

    def _pixels(self, path: str, rec: Record, seed: int):
        gen = torch.Generator().manual_seed(seed)
        if rec.kind == "image":
            img = open_rgb(path)
            px = image_train_transform(img, gen) if self.augment else image_eval_transform(img)
            return "pixel_values", px, [0], 1.0
        idx = index_video(path)
        if idx.vlen == 0:
            raise _Skip("corrupt_media", f"{rec.media}: video stream has no frames")
        n = self.spec.n_frames
        indices = sample_indices(idx, n, self.sampling, rng=random.Random(seed))
        if len(indices) != n:
            raise _Skip("too_short", f"{rec.media}: {idx.vlen} frames give {len(indices)} of {n} sampled frames")
        frames, _, _ = read_frames(path, indices, idx)
        px = video_train_transform(frames, gen) if self.augment else normalize_frames(frames)
        return "pixel_values", px, indices, (idx.avg_fps if idx.avg_fps > 0 else 1.0)

    def _from_cache(self, rec: Record, seed: int):
        from videollama.training.feature_cache import cache_key, media_stat, view_key

        stat = media_stat(rec)  # one stat per sample for every entry it looks up
        entry = self.cache.lookup(cache_key(self.name, rec, self.spec.media_root), stat)
        if entry is None:
            return None
        key = "frame_features" if self.branch in ("vl", "av") else "imagebind_embeds"
        if self.branch == "av":  # frames and audio both from the cache, or neither (av_cache.py)
            from videollama.training.data.av_cache import AUDIO_SUFFIX

            audio = self.cache.lookup(entry.key + AUDIO_SUFFIX, stat)
            if audio is None or rec.kind != "video":
                return None
            self._cached_audio = self.cache.load(audio)
        if self.augment and self.cache.views and rec.kind == "video":  # one of the eval + augmented views
            view = random.Random(f"view:{seed}").randrange(self.cache.views + 1)
            entry = self.cache.lookup(view_key(entry.key, view), stat) or entry
        if rec.kind == "image":
            return key, self.cache.load(entry, [0]), [0], 1.0
        n = self.spec.n_frames
        frames = list(entry.frames)
        if self.sampling == "uniform":
            wanted = _sampling.uniform_indices(entry.vlen, n)
            where = {f: k for k, f in enumerate(frames)}
            if any(w not in where for w in wanted):
                return None
            positions = [where[w] for w in wanted]
        else:
            rng = random.Random(seed)
            sampler = _sampling.headtail_indices if self.sampling == "headtail" else _sampling.random_indices
            positions = sampler(len(frames), n, rng)
        if len(positions) != n:
            raise _Skip("too_short", f"{rec.media}: {entry.vlen} frames give {len(positions)} of {n} sampled frames")
        return key, self.cache.load(entry, positions), [frames[p] for p in positions], entry.fps or 1.0

    # ------------------------------------------------------------------------------------------ text
    def _text(self, index: int, rec: Record, indices: list[int], fps: float) -> dict[str, Any]:
        if self.task == "caption":
            if rec.caption is None:
                raise _Skip("malformed", "a caption dataset record has no caption")
            cap = blip_caption(rec.caption.strip()) if self.spec.format == "webvid" else rec.caption
            return {"caption": cap}
        # The instruct text depends on the record and, off branch "av", on the sampled frames' timestamps only.
        msg = ("" if self.with_audio or rec.kind != "video" or not self.spec.timestamp_message
               else _sampling.timestamp_message(indices, fps))
        text = self.text_memo.get((index, msg))
        if text is None:
            text = self._audio_video_text(rec) if self.with_audio else self._instruct_text(rec, msg)
            self.text_memo.put((index, msg), text)
        return text

    def _instruct_text(self, rec: Record, msg: str) -> dict[str, Any]:
        n = self.num_media_tokens
        if rec.qa is not None:
            if rec.kind == "video":
                turns = video_instruct_turns(list(rec.qa), msg, n)
            else:
                turns = [t for p in rec.qa for t in ({"from": "human", "value": p["q"]}, {"from": "gpt", "value": p["a"]})]
                turns[0] = {"from": "human", "value": "<image>\n" + turns[0]["value"]}
                turns = llava_instruct_turns(turns, n)
        elif rec.turns is not None:
            turns = [dict(t) for t in rec.turns]
            has_ph = any("<image>" in t["value"] or "<video>" in t["value"] for t in turns)
            if self.spec.format == "llava_instruct" or has_ph:
                vid = "<Video>" + IMAGE_PLACEHOLDER * n + "</Video> " + msg
                turns = [{"from": t["from"], "value": t["value"].replace("<video>", vid)} for t in turns]
                turns = llava_instruct_turns(turns, n)
            else:
                first = next(i for i, t in enumerate(turns) if t["from"] == "human")
                pre = ("<Video>" + IMAGE_PLACEHOLDER * n + "</Video> " + msg if rec.kind == "video"
                       else "<Image>" + IMAGE_PLACEHOLDER * n + "</Image> ")
                turns[first] = {"from": "human", "value": pre + turns[first]["value"]}
        else:
            raise _Skip("malformed", "an instruct dataset record has no conversations")
        try:
            sample = build_instruct_sample(turns, self.tokenizer, self.template, max_length=self.instruct_max_len)
        except (ValueError, KeyError) as exc:
            raise _Skip("malformed", f"cannot build the {self.template} text: {exc}") from exc
        ids = sample.input_ids
        pos = [i for i, t in enumerate(ids) if t == self.media_token_id]
        if len(pos) != n or (pos and pos[-1] - pos[0] != n - 1):
            reason = "truncated" if len(pos) < n and len(ids) >= self.instruct_max_len else "malformed"
            raise _Skip(reason, f"text holds {len(pos)} media placeholder tokens, need {n} consecutive "
                                f"({len(ids)} tokens, max {self.instruct_max_len})")
        return {"input_ids": ids, "labels": sample.labels}


    def _audio_video_text(self, rec: Record) -> dict[str, Any]:
        """Branch "av" instruct text: the audio+video first turn + the first question, empty system (inference's)."""
        if rec.qa is not None:
            turns = [t for p in rec.qa for t in ({"from": "human", "value": p["q"]}, {"from": "gpt", "value": p["a"]})]
        elif rec.turns is not None:
            turns = [{"from": t["from"], "value": t["value"].replace("<video>", "").replace("<image>", "").strip()}
                     for t in rec.turns]
        else:
            raise _Skip("malformed", "an instruct dataset record has no conversations")
        first = next((i for i, t in enumerate(turns) if t["from"] == "human"), None)
        if first is None:
            raise _Skip("malformed", "an instruct dataset record has no human turn")
        na, nv = self.num_audio_tokens, self.num_media_tokens
        turns[first] = {"from": "human", "value": audio_video_first_turn(na, nv) + " " + turns[first]["value"]}
        try:
            if self.template in ("llama_2", "llama_v2"):
                sample = build_llama2_sample(turns, self.tokenizer, max_length=self.instruct_max_len, system="")
            else:  # vicuna, chat_template (whose empty system is the pipeline's too)
                sample = build_instruct_sample(turns, self.tokenizer, self.template, max_length=self.instruct_max_len)
        except (ValueError, KeyError) as exc:
            raise _Skip("malformed", f"cannot build the {self.template} text: {exc}") from exc
        ids = sample.input_ids
        pos = [i for i, t in enumerate(ids) if t == self.media_token_id]
        runs: list[int] = []
        for k, p in enumerate(pos):
            if k and p == pos[k - 1] + 1:
                runs[-1] += 1
            else:
                runs.append(1)
        if runs != [na, nv]:
            reason = "truncated" if len(pos) < na + nv and len(ids) >= self.instruct_max_len else "malformed"
            raise _Skip(reason, f"text holds media placeholder runs {runs}, need [{na}, {nv}] (audio, video) "
                                f"({len(ids)} tokens, max {self.instruct_max_len})")
        return {"input_ids": ids, "labels": sample.labels}


class _Skip(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message
