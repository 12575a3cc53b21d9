"""Pydantic models of the OpenAI Chat Completions wire format (the subset we serve, plus a few extensions).

Media content parts follow the convention of other OpenAI-compatible multimodal servers (e.g. vLLM):
``{"type": "video_url", "video_url": {"url": ...}}``, likewise ``image_url`` / ``audio_url``; the OpenAI
``input_audio`` part (base64 data + format) is accepted too.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Lenient(BaseModel):
    """Request objects ignore fields they do not know (clients send many optional OpenAI fields)."""

    model_config = ConfigDict(extra="ignore")


# ---------------------------------------------------------------------------------------------- request parts
class MediaURL(_Lenient):
    url: str = Field(description="a path inside --media-root, a file:// URL inside it, a base64 data: URL, "
                                 "or (only with --allow-remote-urls) an http(s) URL")
    detail: str | None = None


class TextPart(_Lenient):
    type: Literal["text"]
    text: str


class ImageURLPart(_Lenient):
    type: Literal["image_url"]
    image_url: MediaURL


class VideoURLPart(_Lenient):
    type: Literal["video_url"]
    video_url: MediaURL


class AudioURLPart(_Lenient):
    type: Literal["audio_url"]
    audio_url: MediaURL


class InputAudio(_Lenient):
    data: str = Field(description="base64-encoded audio file")
    format: str = Field("wav", description="file suffix, e.g. 'wav' or 'mp3'")


class InputAudioPart(_Lenient):
    type: Literal["input_audio"]
    input_audio: InputAudio


ContentPart = Annotated[
    TextPart | ImageURLPart | VideoURLPart | AudioURLPart | InputAudioPart, Field(discriminator="type")
]


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None


class StreamOptions(_Lenient):
    include_usage: bool = False


class ChatCompletionRequest(_Lenient):
    """`POST /v1/chat/completions` body. `top_k`, `repetition_penalty` and `use_audio` are extensions."""

    model: str | None = Field(None, description="the served model id (see GET /v1/models); omitted = that one")
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0, description="0 means greedy decoding")
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=0, description="extension: top-k sampling (0 disables it)")
    repetition_penalty: float | None = Field(None, gt=0.0, description="extension")
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, description="only 1 is supported")
    stop: str | list[str] | None = Field(None, description="up to 4 extra stop strings (not included in the answer)")
    presence_penalty: float | None = Field(None, description="only 0 is supported")
    frequency_penalty: float | None = Field(None, description="only 0 is supported")
    logprobs: bool | None = Field(None, description="not supported")
    tools: list[dict[str, Any]] | None = Field(None, description="not supported")
    use_audio: bool = Field(True, description="extension: feed a video's audio track to the audio branch")
    user: str | None = None


# ---------------------------------------------------------------------------------------------- responses
def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class ChatCompletion(BaseModel):
    """A non-streaming answer. `notices` (extension) lists what was skipped or changed, e.g. the audio branch."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None
    notices: list[str] | None = Field(None, description="extension; absent when there is nothing to report")


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    """One server-sent event of a streamed answer."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    notices: list[str] | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "videollama"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI-style error body."""

    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    model: str
    running_or_queued: int
    capacity: int
