"""The OpenAI-compatible HTTP API: `POST /v1/chat/completions`, `GET /v1/models`, `GET /health`.

```python
from videollama.serving import ServerConfig, create_app
app = create_app(videollama.load("models/videollama2-7b"), ServerConfig(media_root=Path("media")))
```

Inference runs in worker threads (`Engine`), never on the event loop. Every failure a client can cause - bad
JSON, unknown model, unreadable media, paths outside the media root, limits - is a 4xx OpenAI-style error body
(`{"error": {"message", "type", "param", "code"}}`) and the server stays up. Notices (e.g. "audio branch
skipped: the file has no audio track") come back in the `X-VideoLLaMA-Notice` header and a `notices` field.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import AsyncIterator
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from videollama.errors import (
    CorruptMediaError, MediaError, MediaNotFoundError, UnsupportedMediaError, VideoLLaMAError,
)
from videollama.inference.pipeline import GenerationSettings, VideoLLaMAPipeline
from videollama.serving.engine import Delta, Done, Engine, Event, Failed, QueueFull, Ready, TurnJob
from videollama.serving.errors import APIError
from videollama.serving.media_refs import MediaKind, MediaRef, TempMediaStore, resolve_media
from videollama.serving.schemas import (
    AssistantMessage, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChatMessage, Choice, ChunkChoice,
    ErrorResponse, Health, ModelCard, ModelList, Usage, completion_id, now,
)
from videollama.serving.schemas import Delta as DeltaModel

log = logging.getLogger(__name__)

NOTICE_HEADER = "X-VideoLLaMA-Notice"
_MEDIA_PARTS: dict[str, MediaKind] = {"video_url": "video", "image_url": "image", "audio_url": "audio",
                                      "input_audio": "audio"}
_ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 413, 429, 504)}


@dataclass
class ServerConfig:
    """Server limits and options (the `videollama serve` flags)."""

    model_name: str = "videollama"
    media_root: Path | None = None
    allow_remote_urls: bool = False
    api_key: str | None = None
    max_body_mb: float = 64.0
    max_media_mb: float = 256.0  # data: URLs (also bounded by the body) and downloads
    max_media_seconds: float = 600.0  # 0 = no limit
    max_tokens: int = 1024
    max_concurrent: int = 1
    queue_size: int = 8
    request_timeout: float = 300.0
    download_timeout: float = 30.0


# ------------------------------------------------------------------------------------------ request -> job
@dataclass
class _MediaSpec:
    url: str
    kind: MediaKind
    message_index: int


def _text_and_media(msg: ChatMessage, index: int) -> tuple[str, list[_MediaSpec]]:
    if msg.content is None:
        return "", []
    if isinstance(msg.content, str):
        return msg.content, []
    texts: list[str] = []
    media: list[_MediaSpec] = []
    for part in msg.content:
        if part.type == "text":
            texts.append(part.text)
        elif part.type == "input_audio":
            media.append(_MediaSpec(f"data:audio/{part.input_audio.format};base64,{part.input_audio.data}",
                                    "audio", index))
        else:
            media.append(_MediaSpec(getattr(part, part.type).url, _MEDIA_PARTS[part.type], index))
    return "\n".join(t for t in texts if t), media


def build_job(req: ChatCompletionRequest, pipe: VideoLLaMAPipeline, config: ServerConfig
              ) -> tuple[TurnJob, _MediaSpec | None, list[str]]:
    """Validate a request and turn it into a job (without touching media yet), plus notices."""
    notices: list[str] = []
    system: list[str] = []
    turns: list[list[str]] = []  # [role, text], consecutive same-role messages merged
    media: _MediaSpec | None = None
    first_user: int | None = None
    for i, msg in enumerate(req.messages):
        param = f"messages[{i}]"
        if msg.role in ("tool", "function"):
            raise APIError(400, f"{param}: role {msg.role!r} is not supported (no tool calling)", param=param)
        text, parts = _text_and_media(msg, i)
        if parts and msg.role != "user":
            raise APIError(400, f"{param}: media is only accepted in user messages", param=param)
        if len(parts) + (media is not None) > 1:
            raise APIError(400, "only one media item (video, image or audio) per conversation is supported",
                           param=param, code="too_many_media")
        if parts:
            media = parts[0]
        if msg.role in ("system", "developer"):
            system.append(text)
            continue
        role = msg.role
        if role == "user" and first_user is None:
            first_user = i
        if not turns and role == "assistant":
            raise APIError(400, f"{param}: the conversation must start with a user message", param=param)
        if turns and turns[-1][0] == role:
            turns[-1][1] = "\n".join(t for t in (turns[-1][1], text) if t)
        else:
            turns.append([role, text])
    if not turns or turns[-1][0] != "user":
        raise APIError(400, "the last message must be a user message", param="messages")
    if media is not None and media.message_index != first_user:
        notices.append("the media was attached to the first user message (one media item per conversation, "
                       "always at its start)")
    history = [(turns[k][1], turns[k + 1][1]) for k in range(0, len(turns) - 1, 2)]
    question = turns[-1][1]
    if not question.strip() and media is None:
        raise APIError(400, "the last user message is empty", param="messages")
    job = TurnJob(question=question, settings=_settings(req, pipe, config), history=history,
                  system="\n".join(system) if system else None, use_audio=req.use_audio,
                  stop=_stops(req.stop), stream=req.stream)
    return job, media, notices


def _stops(stop: str | list[str] | None) -> list[str]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if len(stops) > 4:
        raise APIError(400, "at most 4 stop strings are supported", param="stop")
    return [s for s in stops if s]


def _settings(req: ChatCompletionRequest, pipe: VideoLLaMAPipeline, config: ServerConfig) -> GenerationSettings:
    if req.n != 1:
        raise APIError(400, "only n=1 is supported", param="n")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(req, name):
            raise APIError(400, f"{name} is not supported (use the repetition_penalty extension)", param=name)
    if req.logprobs:
        raise APIError(400, "logprobs are not supported", param="logprobs")
    if req.tools:
        raise APIError(400, "tools are not supported", param="tools")
    param = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
    max_new = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    if max_new is None:
        max_new = min(pipe.settings.max_new_tokens, config.max_tokens)
    elif max_new > config.max_tokens:
        raise APIError(400, f"{param}={max_new} is over this server's limit of {config.max_tokens}", param=param,
                       code="max_tokens_exceeded")
    greedy = req.temperature == 0
    overrides: dict[str, Any] = dict(max_new_tokens=max_new, top_p=req.top_p, top_k=req.top_k, seed=req.seed,
                                     repetition_penalty=req.repetition_penalty)
    if req.temperature is not None and not greedy:
        overrides.update(temperature=req.temperature, do_sample=True)
    return pipe.settings.updated(greedy=greedy or None, **overrides)


# ------------------------------------------------------------------------------------------ errors
def _media_error(exc: MediaError, ref: MediaRef | None) -> APIError:
    message = str(exc)
    if ref is not None:  # never show server-side paths
        message = message.replace(str(ref.path), ref.label)
    code = ("media_not_found" if isinstance(exc, MediaNotFoundError) else
            "unsupported_media" if isinstance(exc, UnsupportedMediaError) else
            "corrupt_media" if isinstance(exc, CorruptMediaError) else "invalid_media")
    return APIError(400, message, code=code, param="messages")


def _job_error(exc: BaseException, ref: MediaRef | None) -> APIError:
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, MediaError):
        return _media_error(exc, ref)
    if isinstance(exc, VideoLLaMAError):
        return APIError(400, str(exc))
    log.error("generation failed", exc_info=exc)
    return APIError(500, f"internal error during generation: {type(exc).__name__}", code="internal_error")


def _header_value(notices: list[str]) -> str:
    text = " | ".join(notices)
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)[:2000]


class BodyLimit:
    """ASGI middleware: refuse request bodies over `max_bytes` with 413 (Content-Length or counted)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        too_big = APIError(413, f"request body is larger than this server's limit of {self.max_bytes} bytes",
                           code="request_too_large")
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await JSONResponse(too_big.body(), 413)(scope, receive, send)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return await JSONResponse(too_big.body(), 413)(scope, receive, send)
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# ------------------------------------------------------------------------------------------ the app
def create_app(pipe: VideoLLaMAPipeline, config: ServerConfig | None = None) -> FastAPI:
    """A FastAPI app serving `pipe` under `config` (see the module docstring)."""
    config = config or ServerConfig()
    engine = Engine(pipe, config.max_concurrent, config.queue_size)
    store = TempMediaStore()
    started = now()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.shutdown()
        store.close()

    app = FastAPI(title="videollama", version="1", lifespan=lifespan,
                  description="OpenAI-compatible Chat Completions over Video-LLaMA (video, image and audio input).")
    app.state.engine, app.state.store, app.state.config, app.state.pipe = engine, store, config, pipe
    app.add_middleware(BodyLimit, max_bytes=int(config.max_body_mb * 1024 * 1024))

    # ---- errors: always the OpenAI body
    @app.exception_handler(APIError)
    async def _api_error(_request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        if first.get("type") == "json_invalid":
            message, param = "the request body is not valid JSON", None
        else:
            param = ".".join(loc) or None
            message = f"{param or 'body'}: {first.get('msg', 'invalid request')}"
            if len(errors) > 1:
                message += f" (and {len(errors) - 1} more problem(s))"
        return JSONResponse(APIError(400, message, param=param, code="invalid_request").body(), 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return JSONResponse(APIError(exc.status_code, str(exc.detail), code=code).body(), exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        return JSONResponse(APIError(500, f"internal server error: {type(exc).__name__}", code="internal_error")
                            .body(), 500)

    # ---- auth
    async def require_key(request: Request) -> None:
        if not config.api_key:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), config.api_key.encode()):
            raise APIError(401, "missing or invalid API key (send 'Authorization: Bearer <key>')",
                           code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    auth = [Depends(require_key)]

    # ---- routes
    @app.get("/health", response_model=Health, tags=["server"])
    async def health() -> Health:
        """Liveness: the model is loaded; how many requests are running or queued."""
        return Health(model=config.model_name, running_or_queued=engine.pending, capacity=engine.capacity)

    @app.get("/v1/models", response_model=ModelList, dependencies=auth, responses=_ERRORS, tags=["openai"])
    async def list_models() -> ModelList:
        """The one served model."""
        return ModelList(data=[ModelCard(id=config.model_name, created=started)])

    @app.get("/v1/models/{model_id:path}", response_model=ModelCard, dependencies=auth, responses=_ERRORS,
             tags=["openai"])
    async def get_model(model_id: str) -> ModelCard:
        if model_id != config.model_name:
            raise APIError(404, f"the model {model_id!r} does not exist (this server serves "
                                f"{config.model_name!r})", param="model", code="model_not_found")
        return ModelCard(id=config.model_name, created=started)

    @app.post("/v1/chat/completions", response_model=ChatCompletion, dependencies=auth, tags=["openai"],
              responses={**_ERRORS, 200: {"content": {"text/event-stream": {}}, "description":
                         "a chat.completion, or with stream=true server-sent chat.completion.chunk events"}})
    async def chat_completions(req: ChatCompletionRequest) -> Any:
        """OpenAI Chat Completions with `video_url` / `image_url` / `audio_url` content parts."""
        if req.model is not None and req.model != config.model_name:
            raise APIError(404, f"the model {req.model!r} does not exist (this server serves "
                                f"{config.model_name!r})", param="model", code="model_not_found")
        job, media_spec, notices = build_job(req, pipe, config)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.request_timeout
        ref: MediaRef | None = None
        future: Future | None = None
        handed_off = False
        try:
            if media_spec is not None:
                ref = await _in_thread(deadline, job, resolve_media, media_spec.url, media_spec.kind,
                                       media_root=config.media_root, store=store,
                                       max_bytes=int(config.max_media_mb * 1024 * 1024),
                                       allow_remote=config.allow_remote_urls,
                                       download_timeout=config.download_timeout)
                await _in_thread(deadline, job, _check_duration, ref, config.max_media_seconds)
                job.media_path, job.media_kind = str(ref.path), ref.kind
            events: asyncio.Queue[Event] = asyncio.Queue()

            def emit(event: Event) -> None:
                loop.call_soon_threadsafe(events.put_nowait, event)

            try:
                future = engine.submit(job, emit)
            except QueueFull as exc:
                raise APIError(429, f"{exc}; try again later", code="queue_full", headers={"Retry-After": "1"}) from exc
            if ref is not None and ref.temporary:  # the worker may still read it: release when the job ends
                temp_path = ref.path
                future.add_done_callback(lambda _f: store.release(temp_path))
                handed_off = True
            first = await _next_event(events, deadline, job, future, config)
            if isinstance(first, Failed):
                raise _job_error(first.error, ref)
            assert isinstance(first, Ready)
            notices += first.notices
            headers = {NOTICE_HEADER: _header_value(notices)} if notices else {}
            cid, created = completion_id(), now()
            if req.stream:
                include_usage = bool(req.stream_options and req.stream_options.include_usage)
                return StreamingResponse(
                    _sse(events, deadline, job, future, config, cid, created, first.prompt_tokens, notices,
                         include_usage, ref),
                    media_type="text/event-stream", headers={**headers, "Cache-Control": "no-cache"})
            while True:
                event = await _next_event(events, deadline, job, future, config)
                if isinstance(event, Failed):
                    raise _job_error(event.error, ref)
                if isinstance(event, Done):
                    break
            body = ChatCompletion(
                id=cid, created=created, model=config.model_name,
                choices=[Choice(message=AssistantMessage(content=event.text), finish_reason=event.finish_reason)],
                usage=Usage(prompt_tokens=first.prompt_tokens, completion_tokens=event.completion_tokens,
                            total_tokens=first.prompt_tokens + event.completion_tokens),
                notices=notices or None,
            ).model_dump()
            if body["notices"] is None:
                del body["notices"]
            return JSONResponse(body, headers=headers)
        finally:
            if ref is not None and ref.temporary and not handed_off:
                store.release(ref.path)

    return app


async def _in_thread(deadline: float, job: TurnJob, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run blocking `fn` in the thread pool within the request deadline."""
    remaining = deadline - asyncio.get_running_loop().time()
    try:
        return await asyncio.wait_for(run_in_threadpool(fn, *args, **kwargs), timeout=max(remaining, 0.001))
    except TimeoutError as exc:
        job.cancel.set()
        raise APIError(504, "the request timed out while fetching its media", code="timeout") from exc


def _check_duration(ref: MediaRef, max_seconds: float) -> None:
    """Probe video/audio and refuse media longer than `max_seconds` (0 = no limit)."""
    if ref.kind == "image" or max_seconds <= 0:
        return
    from videollama.media import probe

    try:
        info = probe(ref.path)
    except MediaError as exc:
        raise _media_error(exc, ref) from exc
    if info.duration is not None and info.duration > max_seconds:
        raise APIError(400, f"{ref.label}: media is {info.duration:.1f} s long, over this server's limit of "
                            f"{max_seconds:g} s", param="messages", code="media_too_long")


async def _next_event(events: asyncio.Queue[Event], deadline: float, job: TurnJob, future: Future,
                      config: ServerConfig) -> Event:
    """The job's next event, or a 504 (and the job cancelled) when the request deadline passes."""
    remaining = deadline - asyncio.get_running_loop().time()
    try:
        return await asyncio.wait_for(events.get(), timeout=max(remaining, 0.001))
    except TimeoutError as exc:
        job.cancel.set()
        future.cancel()
        raise APIError(504, f"the request did not finish within {config.request_timeout:g} s "
                            f"(queued or generating)", code="timeout") from exc


def _sse_data(payload: dict) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def _sse(events: asyncio.Queue[Event], deadline: float, job: TurnJob, future: Future, config: ServerConfig,
               cid: str, created: int, prompt_tokens: int, notices: list[str], include_usage: bool,
               ref: MediaRef | None) -> AsyncIterator[str]:
    """Server-sent events: a role delta, content deltas, a finish chunk, (usage), then `[DONE]`."""

    def chunk(delta: DeltaModel, finish: str | None = None, **extra: Any) -> str:
        c = ChatCompletionChunk(id=cid, created=created, model=config.model_name,
                                choices=[ChunkChoice(delta=delta, finish_reason=finish)], **extra)
        return _sse_data(c.model_dump(exclude_none=True) | {"choices": [
            {"index": 0, "delta": delta.model_dump(exclude_none=True), "finish_reason": finish, "logprobs": None}]})

    try:
        yield chunk(DeltaModel(role="assistant", content=""), notices=notices or None)
        while True:
            try:
                event = await _next_event(events, deadline, job, future, config)
            except APIError as exc:
                yield _sse_data(exc.body())
                break
            if isinstance(event, Delta):
                if event.text:
                    yield chunk(DeltaModel(content=event.text))
            elif isinstance(event, Done):
                yield chunk(DeltaModel(), event.finish_reason)
                if include_usage:
                    usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=event.completion_tokens,
                                  total_tokens=prompt_tokens + event.completion_tokens)
                    yield _sse_data({"id": cid, "object": "chat.completion.chunk", "created": created,
                                     "model": config.model_name, "choices": [], "usage": usage.model_dump()})
                break
            elif isinstance(event, Failed):
                yield _sse_data(_job_error(event.error, ref).body())
                break
        yield "data: [DONE]\n\n"
    finally:
        job.cancel.set()  # client gone or finished: stop generating
