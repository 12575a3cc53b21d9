"""Runs chat turns on the pipeline in worker threads: a bounded queue, serialized generation, cancellation.

A job reports through a callback (called from the worker thread) with, in order: one `Ready` (media encoded,
prompt built), any number of `Delta` (streamed text, only when asked for), then `Done` - or a `Failed` at any
point. Setting the job's cancel event makes generation stop at the next token (timeouts, client disconnects).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from transformers.generation.streamers import BaseStreamer

from videollama.inference.pipeline import GenerationSettings, VideoLLaMAPipeline, _visible_text
from videollama.serving.media_refs import MediaKind
from videollama.text import stop_sequences
from videollama.text.prompt import context_begin_index

log = logging.getLogger(__name__)

FinishReason = Literal["stop", "length"]


@dataclass
class TurnJob:
    """One chat completion: conversation so far, the new question, media and decoding settings."""

    question: str
    settings: GenerationSettings
    history: list[tuple[str, str]] = field(default_factory=list)
    system: str | None = None
    media_path: str | None = None
    media_kind: MediaKind | None = None
    use_audio: bool = True
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass
class Ready:
    prompt_tokens: int
    notices: list[str]


@dataclass
class Delta:
    text: str


@dataclass
class Done:
    text: str
    completion_tokens: int
    finish_reason: FinishReason


@dataclass
class Failed:
    error: BaseException


Event = Ready | Delta | Done | Failed


class QueueFull(Exception):
    """Every worker is busy and the wait queue is full."""


class _Abort(Exception):
    """Raised inside `generate` (through the streamer) to end it early."""


class _TokenSink(BaseStreamer):
    """Collects generated ids; calls `on_ids` after each step; aborts generation when asked to."""

    def __init__(self, cancel: threading.Event, on_ids: Callable[[list[int]], bool] | None) -> None:
        self.ids: list[int] = []
        self.cancel = cancel
        self.on_ids = on_ids
        self.stopped = False  # a user stop string was hit
        self._prompt_seen = False

    def put(self, value) -> None:
        if not self._prompt_seen:  # the first call carries the (empty) prompt
            self._prompt_seen = True
            return
        if self.cancel.is_set():
            raise _Abort("cancelled")
        self.ids.extend(int(v) for v in value.view(-1).tolist())
        if self.on_ids is not None and self.on_ids(self.ids):
            self.stopped = True
            raise _Abort("stop string")

    def end(self) -> None:
        pass


def _cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """Text before the first user stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def _hold_back(text: str, stops: list[str]) -> str:
    """Drop a tail that may still grow into a user stop string."""
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:k]):
                return text[:-k]
    return text


def run_turn(pipe: VideoLLaMAPipeline, job: TurnJob, emit: Callable[[Event], None]) -> None:
    """Do one job on the calling thread, reporting through `emit` (never raises)."""
    try:
        _run_turn(pipe, job, emit)
    except BaseException as exc:  # reported to the HTTP layer; the worker stays alive
        if not isinstance(exc, Exception):
            raise
        emit(Failed(exc))


def _run_turn(pipe: VideoLLaMAPipeline, job: TurnJob, emit: Callable[[Event], None]) -> None:
    if job.cancel.is_set():
        return
    notices: list[str] = []
    prepared = None
    if job.media_path is not None:
        prepared = pipe.prepare(job.media_path, job.media_kind, job.use_audio)
        if prepared.notice:
            notices.append(prepared.notice)
    session = pipe.chat(prepared, system=job.system)
    # Earlier turns are replayed into the template exactly as if they had been generated here.
    for question, answer in job.history:
        session._prepare_turn(question)
        session.conv.set_answer(answer)
        session.history.append((question, answer))
    session._prepare_turn(job.question)
    context = session.context_embeds()
    gen = job.settings
    begin = context_begin_index(context.shape[1], gen.max_new_tokens, gen.max_length, warn=False)
    if begin:
        notices.append(f"the conversation is longer than max_length {gen.max_length}: its first {begin} "
                       f"positions were dropped")
    emit(Ready(prompt_tokens=int(context.shape[1] - begin), notices=notices))

    shown = ""
    stops = [s for s in job.stop if s]

    def on_ids(ids: list[int]) -> bool:
        nonlocal shown
        text = _visible_text(ids, pipe.tokenizer, session.conv).rstrip("\ufffd")  # wait for whole characters
        text, hit = _cut_at_stop(text, stops)
        if not hit:
            text = _hold_back(text, stops)
        if job.stream and len(text) > len(shown) and text.startswith(shown):
            emit(Delta(text[len(shown):]))
            shown = text
        return hit

    sink = _TokenSink(job.cancel, on_ids if (job.stream or stops) else None)
    try:
        ids = pipe.generate([context], gen, conv=session.conv, streamer=sink, prefix_len=session.prefix_len)[0]
    except _Abort:
        if not sink.stopped:  # cancelled: nobody is listening any more
            return
        ids = sink.ids
    answer = session._finish(ids)
    answer, hit = _cut_at_stop(answer, stops)
    hit = hit or sink.stopped
    if job.stream and answer.startswith(shown) and len(answer) > len(shown):
        emit(Delta(answer[len(shown):]))
    emit(Done(answer, len(ids), _finish_reason(pipe, session.conv, ids, gen, hit)))


def _finish_reason(pipe: VideoLLaMAPipeline, conv, ids: list[int], gen: GenerationSettings,
                   user_stop: bool) -> FinishReason:
    if user_stop or not ids:
        return "stop"
    eos = pipe.tokenizer.eos_token_id
    if eos is not None and ids[-1] == eos:
        return "stop"
    for stop in stop_sequences(conv, pipe.tokenizer):
        if stop and ids[-len(stop):] == list(stop):
            return "stop"
    return "length" if len(ids) >= gen.max_new_tokens else "stop"


class Engine:
    """`max_concurrent` worker threads in front of one pipeline, with at most `queue_size` jobs waiting.

    The pipeline itself serializes `generate` (one generation at a time per model); with more than one worker,
    media decoding/encoding of one request overlaps another's generation.
    """

    def __init__(self, pipe: VideoLLaMAPipeline, max_concurrent: int = 1, queue_size: int = 8) -> None:
        self.pipe = pipe
        self.capacity = max_concurrent + queue_size
        self._executor = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="videollama-gen")
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Jobs running or waiting (a cancelled job counts until its worker has really stopped)."""
        return self._pending

    def submit(self, job: TurnJob, emit: Callable[[Event], None]) -> Future:
        with self._lock:
            if self._pending >= self.capacity:
                raise QueueFull(f"server busy: {self._pending} requests running or queued")
            self._pending += 1
        try:
            future = self._executor.submit(run_turn, self.pipe, job, emit)
        except BaseException:
            self._release(None)
            raise
        future.add_done_callback(self._release)
        return future

    def _release(self, _future: Future | None) -> None:
        with self._lock:
            self._pending -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
