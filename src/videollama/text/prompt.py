"""Inference prompt splitting and tokenization (SPEC §1.11c, §4.4).

The rendered prompt holds one `<ImageHere>` per media embedding. It is split with `str.split` at each one;
segment 0 is tokenized **with** BOS, the others without. Segments and embeddings are then interleaved:
seg0, E0, seg1, E1, ..., seg_n.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from videollama.text.templates import IMAGE_PLACEHOLDER, Conversation
from videollama.text.tokenizer import TextTokenizer

__all__ = [
    "PromptSegments",
    "split_prompt",
    "tokenize_segments",
    "build_prompt_segments",
    "context_begin_index",
]


@dataclass
class PromptSegments:
    """A rendered prompt, its text segments and their token ids."""

    prompt: str
    texts: list[str]
    ids: list[list[int]]

    @property
    def num_media(self) -> int:
        """How many media embeddings go between the segments."""
        return len(self.texts) - 1

    def text_length(self) -> int:
        """Total number of text tokens."""
        return sum(len(x) for x in self.ids)


def split_prompt(prompt: str, placeholder: str = IMAGE_PLACEHOLDER) -> list[str]:
    """Split a rendered prompt at every placeholder (plain `str.split`, empty segments kept)."""
    return prompt.split(placeholder)


def tokenize_segments(segments: list[str], tokenizer: TextTokenizer) -> list[list[int]]:
    """Token ids of each segment: segment 0 with BOS, all others without."""
    return [tokenizer.encode(seg, add_bos=(i == 0)) for i, seg in enumerate(segments)]


def build_prompt_segments(
    prompt_or_conv: str | Conversation,
    tokenizer: TextTokenizer,
    num_media: int | None = None,
) -> PromptSegments:
    """Render (if given a conversation), split and tokenize a prompt.

    `num_media`, when given, must equal the number of placeholders (the official assertion).
    """
    prompt = prompt_or_conv.get_prompt() if isinstance(prompt_or_conv, Conversation) else prompt_or_conv
    texts = split_prompt(prompt)
    if num_media is not None and len(texts) != num_media + 1:
        raise ValueError(
            f"prompt has {len(texts) - 1} {IMAGE_PLACEHOLDER} placeholders but {num_media} media embeddings were given"
        )
    return PromptSegments(prompt=prompt, texts=texts, ids=tokenize_segments(texts, tokenizer))


def context_begin_index(context_len: int, max_new_tokens: int, max_length: int = 2000, warn: bool = True) -> int:
    """First embedding position kept by the official left truncation (SPEC §4.4; quirk 38).

    If `context_len + max_new_tokens > max_length`, the first `context_len + max_new_tokens - max_length`
    embeddings are dropped (BOS and possibly media are lost); a warning is issued then.
    """
    over = context_len + max_new_tokens - max_length
    if over > 0 and warn:
        warnings.warn(
            f"the conversation ({context_len} tokens + {max_new_tokens} new) exceeds max_length {max_length}; "
            f"the first {over} context positions are dropped",
            stacklevel=2,
        )
    return max(0, over)
