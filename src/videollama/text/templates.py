"""Conversation templates, first-turn messages, stop ids and answer post-processing (SPEC §4).

Two official templates render byte-exactly like the official `Conversation.get_prompt`:

* `vicuna` (SINGLE style): `system + "###"`, then `"{role}: {text}###"` per message, `"{role}:"` for the
  pending (empty) assistant turn.
* `llama_2` (LLAMA_2 style): the first user text gets `"<<SYS>>\\n{system}\\n<</SYS>>\\n\\n"` in front, user
  turns become `"<s>[INST] {text} [/INST]"`, assistant turns `" {text} </s>"`, and finally leading characters
  of the set {`<`, `s`, `>`} are stripped (the tokenizer adds BOS instead).

A third kind, `hf_chat`, renders with a Hugging Face tokenizer's own `chat_template`; the media placeholder
strings are kept as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Sequence

from videollama.errors import ConfigError

__all__ = [
    "SepStyle",
    "Conversation",
    "TEMPLATES",
    "TEMPLATE_ALIASES",
    "get_template",
    "hf_chat_template",
    "IMAGE_SYSTEM_PROMPT",
    "LLAVA_LLAMA2_SYSTEM_PROMPT",
    "CONV_VISION_SYSTEM_PROMPT",
    "IMAGE_FIRST_TURN",
    "VIDEO_FIRST_TURN",
    "VIDEO_AUDIO_FIRST_TURN",
    "image_first_turn",
    "video_first_turn",
    "video_audio_first_turn",
    "stop_sequences",
    "postprocess_answer",
    "strip_generation_prefix",
]

IMAGE_PLACEHOLDER = "<ImageHere>"

#: System prompt of `conv_llava_llama_2` (the template default).
LLAVA_LLAMA2_SYSTEM_PROMPT = (
    "You are a helpful language and vision assistant. "
    "You are able to understand the visual content that the user provides, "
    "and assist the user with a variety of tasks using natural language."
)
#: System prompt the demos set for image uploads (and, in `demo_video.py`, for videos too).
IMAGE_SYSTEM_PROMPT = (
    "You are able to understand the visual content that the user provides. "
    "Follow the instructions carefully and explain your answers in detail."
)
#: System prompt of the unused `CONV_VISION` template.
CONV_VISION_SYSTEM_PROMPT = (
    "Give the following image: <Img>ImageContent</Img>. "
    "You will be able to see the image once I provide it to you. Please answer my questions."
)

#: First user message for an image (note the trailing space).
IMAGE_FIRST_TURN = "<Image><ImageHere></Image> "
#: First user message for a video, before the timestamp message is appended.
VIDEO_FIRST_TURN = "<Video><ImageHere></Video> "
#: First user message for a video with audio. The 17- and 18-space runs come from a backslash line
#: continuation inside the official source literal and are part of the prompt (SPEC quirk 17).
VIDEO_AUDIO_FIRST_TURN = (
    "Close your eyes, open your ears and you imagine only based on the sound that: <ImageHere>."
    + " " * 17
    + "Close your ears, open your eyes and you see that <Video><ImageHere></Video>."
    + " " * 18
    + "Now answer my question based on what you have just seen and heard."
)


def image_first_turn() -> str:
    """The first user message for an image upload (one `<ImageHere>`)."""
    return IMAGE_FIRST_TURN


def video_first_turn(timestamp_msg: str = "") -> str:
    """The first user message for a video without audio: `"<Video><ImageHere></Video> " + timestamp_msg`."""
    return VIDEO_FIRST_TURN + timestamp_msg


def video_audio_first_turn() -> str:
    """The first user message for a video with audio (two placeholders: audio first, then video)."""
    return VIDEO_AUDIO_FIRST_TURN


class SepStyle(Enum):
    """How a conversation is rendered."""

    SINGLE = "single"
    LLAMA_2 = "llama_2"
    HF_CHAT = "hf_chat"


@dataclass
class Conversation:
    """A conversation and its rendering rules (a fresh copy comes from `get_template`)."""

    name: str
    system: str
    roles: tuple[str, str]
    sep_style: SepStyle
    sep: str
    sep2: str | None = None
    messages: list[list[Any]] = field(default_factory=list)
    #: For `SepStyle.HF_CHAT`: the tokenizer whose `apply_chat_template` renders the prompt.
    hf_tokenizer: Any = None

    # ---------------------------------------------------------------- messages
    def copy(self) -> "Conversation":
        """A copy with its own message list (the tokenizer object is shared)."""
        return Conversation(
            name=self.name,
            system=self.system,
            roles=tuple(self.roles),
            sep_style=self.sep_style,
            sep=self.sep,
            sep2=self.sep2,
            messages=[[r, m] for r, m in self.messages],
            hf_tokenizer=self.hf_tokenizer,
        )

    def append_message(self, role: str, message: str | None) -> None:
        """Append one message; `None` (or "") is the pending assistant turn."""
        self.messages.append([role, message])

    def ask(self, text: str) -> None:
        """Add a user question as the official `Chat.ask` does.

        If the last message is from the user and holds `</Video>` or `</Image>` (a media upload), the question
        is joined to it with one space, usually giving two spaces because that message ends with a space.
        Otherwise a new user message is appended.
        """
        if (
            self.messages
            and self.messages[-1][0] == self.roles[0]
            and self.messages[-1][1] is not None
            and ("</Video>" in self.messages[-1][1] or "</Image>" in self.messages[-1][1])
        ):
            self.messages[-1][1] = " ".join([self.messages[-1][1], text])
        else:
            self.append_message(self.roles[0], text)

    def upload_image(self, system: str | None = None) -> list[str]:
        """Append the image first turn; optionally set the system text. Returns the media order `["image"]`."""
        if system is not None:
            self.system = system
        self.append_message(self.roles[0], image_first_turn())
        return ["image"]

    def upload_video(self, timestamp_msg: str = "", *, with_audio: bool = False, system: str | None = None) -> list[str]:
        """Append the video first turn as the demo's `upload_video` does.

        With audio the system text is forced to "" and the message is the audio+video one (no timestamp
        message); the embeddings must then be given in the order returned: `["audio", "video"]`.
        """
        if with_audio:
            self.system = ""
            self.append_message(self.roles[0], video_audio_first_turn())
            return ["audio", "video"]
        if system is not None:
            self.system = system
        self.append_message(self.roles[0], video_first_turn(timestamp_msg))
        return ["video"]

    def start_answer(self) -> None:
        """Append the pending (empty) assistant turn before generating."""
        self.append_message(self.roles[1], None)

    def set_answer(self, text: str) -> None:
        """Store the generated answer in the pending assistant turn (or append it)."""
        if self.messages and self.messages[-1][0] == self.roles[1] and not self.messages[-1][1]:
            self.messages[-1][1] = text
        else:
            self.append_message(self.roles[1], text)

    # ---------------------------------------------------------------- rendering
    def get_prompt(self) -> str:
        """Render the conversation (byte-exact for the official styles)."""
        if self.sep_style is SepStyle.SINGLE:
            ret = self.system + self.sep
            for role, message in self.messages:
                if message:
                    ret += role + ": " + message + self.sep
                else:
                    ret += role + ":"
            return ret
        if self.sep_style is SepStyle.LLAMA_2:
            ret = ""
            for i, (role, message) in enumerate(self.messages):
                if i == 0:
                    if not message:
                        raise ValueError("llama_2 template: the first message must not be empty")
                    if role != self.roles[0]:
                        raise ValueError("llama_2 template: the first message must come from the user")
                if not message:
                    continue
                if i == 0:
                    message = f"<<SYS>>\n{self.system}\n<</SYS>>\n\n" + message
                if i % 2 == 0:
                    ret += self.sep + f"[INST] {message} [/INST]"
                else:
                    ret += " " + message + " " + (self.sep2 or "")
            # the official code strips the *character set* of sep ("<s>"), not the prefix
            return ret.lstrip(self.sep)
        if self.sep_style is SepStyle.HF_CHAT:
            return self._render_hf()
        raise ValueError(f"unknown separator style {self.sep_style!r}")

    def _render_hf(self) -> str:
        tok = self.hf_tokenizer
        if tok is None or not hasattr(tok, "apply_chat_template"):
            raise ConfigError(f"template {self.name!r}: hf_chat needs a tokenizer with apply_chat_template")
        msgs: list[dict[str, str]] = []
        if self.system:
            msgs.append({"role": "system", "content": self.system})
        pending = False
        for role, message in self.messages:
            hf_role = "user" if role == self.roles[0] else "assistant"
            if message:
                msgs.append({"role": hf_role, "content": message})
            elif hf_role == "assistant":
                pending = True
        text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=pending)
        # BOS comes from the tokenizer when segment 0 is encoded: drop a rendered BOS text in front
        bos = getattr(tok, "bos_token", None)
        if bos and text.startswith(bos):
            text = text[len(bos):]
        return text


TEMPLATES: dict[str, Conversation] = {
    "vicuna": Conversation(
        name="vicuna",
        system="",
        roles=("Human", "Assistant"),
        sep_style=SepStyle.SINGLE,
        sep="###",
    ),
    "llama_2": Conversation(
        name="llama_2",
        system=LLAVA_LLAMA2_SYSTEM_PROMPT,
        roles=("USER", "ASSISTANT"),
        sep_style=SepStyle.LLAMA_2,
        sep="<s>",
        sep2="</s>",
    ),
    "conv_vision": Conversation(
        name="conv_vision",
        system=CONV_VISION_SYSTEM_PROMPT,
        roles=("Human", "Assistant"),
        sep_style=SepStyle.SINGLE,
        sep="###",
    ),
}

#: Other names for the templates (official variable / config names).
TEMPLATE_ALIASES = {
    "default": "vicuna",
    "default_conversation": "vicuna",
    "llama_v2": "llama_2",
    "llama2": "llama_2",
    "conv_llava_llama_2": "llama_2",
    "CONV_VISION": "conv_vision",
}


def get_template(name: str) -> Conversation:
    """A fresh copy of a registered template (`vicuna`, `llama_2`, `conv_vision`, or an alias)."""
    key = TEMPLATE_ALIASES.get(name, name)
    if key not in TEMPLATES:
        raise ConfigError(f"unknown conversation template {name!r}; known: {sorted(TEMPLATES)}")
    return TEMPLATES[key].copy()


def hf_chat_template(tokenizer: Any, system: str = "", name: str = "hf_chat") -> Conversation:
    """A conversation rendered by `tokenizer.apply_chat_template` (for non-LLaMA LLMs)."""
    if not hasattr(tokenizer, "apply_chat_template"):
        raise ConfigError("hf_chat template: the tokenizer has no apply_chat_template")
    return Conversation(
        name=name,
        system=system,
        roles=("user", "assistant"),
        sep_style=SepStyle.HF_CHAT,
        sep="",
        sep2=getattr(tokenizer, "eos_token", None),
        hf_tokenizer=tokenizer,
    )


# ------------------------------------------------------------------------ generation helpers
#: Stop ids hard-coded by the official `Chat.answer` for the LLaMA vocabulary.
OFFICIAL_VICUNA_STOP_IDS: list[list[int]] = [[835], [2277, 29937]]
OFFICIAL_LLAMA2_STOP_IDS: list[list[int]] = [[2]]


def stop_sequences(conv: Conversation, tokenizer: Any = None) -> list[list[int]]:
    """Stop-id sequences for generation (the stop check looks at the tail of row 0).

    With no tokenizer or a `LegacyLlamaTokenizer`, the official literal ids are returned (vicuna `[835]`
    "▁###" and `[2277, 29937]` "##"+"#"; llama_2 `[2]`), exactly as official, whatever the vocabulary.
    For other tokenizers they are derived: for a SINGLE template, the ids of `sep` standing alone and after
    other text; otherwise the EOS id (plus the ids of `sep2` when it is not the EOS text).
    """
    from videollama.text.tokenizer import LegacyLlamaTokenizer

    if tokenizer is None or isinstance(tokenizer, LegacyLlamaTokenizer):
        if conv.sep_style is SepStyle.SINGLE and conv.sep == "###":
            return [list(s) for s in OFFICIAL_VICUNA_STOP_IDS]
        if conv.sep_style is SepStyle.LLAMA_2:
            return [list(s) for s in OFFICIAL_LLAMA2_STOP_IDS]
        if tokenizer is None:
            raise ValueError(f"template {conv.name!r}: stop ids need a tokenizer")
    out: list[list[int]] = []

    def add(seq: Sequence[int]) -> None:
        seq = [int(x) for x in seq]
        if seq and seq not in out:
            out.append(seq)

    if conv.sep_style is SepStyle.SINGLE:
        add(tokenizer.encode(conv.sep, add_bos=False))
        ctx = tokenizer.encode("a", add_bos=False)
        both = tokenizer.encode("a" + conv.sep, add_bos=False)
        if both[: len(ctx)] == ctx:
            add(both[len(ctx):])
    else:
        if tokenizer.eos_token_id is not None:
            add([tokenizer.eos_token_id])
        eos_text = getattr(tokenizer, "eos_token", None)
        if conv.sep2 and conv.sep2 != eos_text and conv.sep_style is not SepStyle.LLAMA_2:
            add(tokenizer.encode(conv.sep2, add_bos=False))
    return out


def strip_generation_prefix(ids: Sequence[int], unk_id: int | None = 0, bos_id: int | None = 1) -> list[int]:
    """Drop a leading unk id, then a leading BOS id, only when present (official `Chat.answer`, quirk 39)."""
    out = [int(i) for i in ids]
    if out and unk_id is not None and out[0] == unk_id:
        out = out[1:]
    if out and bos_id is not None and out[0] == bos_id:
        out = out[1:]
    return out


def postprocess_answer(ids: Sequence[int], tokenizer: Any, conv: Conversation) -> str:
    """Turn generated ids into the answer text (SPEC §4.4 steps 1-3).

    1. drop a leading unk (0), then a leading BOS (1), only when present;
    2. decode with special tokens kept;
    3. SINGLE templates: cut at the first `sep` ("###"), keep the text after the last `"{roles[1]}:"`, strip;
       LLAMA_2 (and hf_chat): cut at the first `sep2` ("</s>"), keep the text after the last
       `"{roles[1]}:"`, strip.
    """
    from videollama.text.tokenizer import LegacyLlamaTokenizer

    if isinstance(tokenizer, LegacyLlamaTokenizer) or tokenizer is None:
        unk_id, bos_id = 0, 1  # official literal ids
    else:
        unk_id, bos_id = tokenizer.unk_token_id, tokenizer.bos_token_id
    text = tokenizer.decode(strip_generation_prefix(ids, unk_id, bos_id))
    if conv.sep_style is SepStyle.SINGLE:
        text = text.split(conv.sep)[0]
        return text.split(conv.roles[1] + ":")[-1].strip()
    if conv.sep2:
        text = text.split(conv.sep2)[0]
    return text.split(conv.roles[1] + ":")[-1].strip()

