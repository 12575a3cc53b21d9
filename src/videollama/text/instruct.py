"""Training text: caption path and instruction path, with the official label masking (SPEC §1.11, §3.4, §5.3-5.4).

Caption path (WebVid, cc_sbu_align, LLaVA-CC3M): text = caption + `end_sym`, tokenized without special
tokens, truncated to `max_txt_len`, right-padded with the pad id. The LLM input is
`[BOS] + N media positions (+ optional prompt around them) + text`; labels are -100 for BOS, the media/prompt
positions and every pad id.

Instruction path (`llava_instruct`, `webvid_instruct`): the conversation text is built per template
(`vicuna` or `llama_v2`), tokenized with BOS and truncated at 512, and the labels are masked with the exact
official length heuristics, which depend on the legacy (4.28) tokenization of each turn on its own:

* vicuna: header `"\\n\\n"` and each formatted turn `"###Role: value\\n"` are tokenized separately, each with
  BOS. `[0, len(header))` is masked, then for every human turn `[c+2, c+len(turn))`; the cursor c grows by
  the turn length after every turn. So the first two tokens of each human turn stay targets.
* llama_v2: position 0 is masked and c = 1. The text is split on `"</s>"`; for every non-empty round that
  splits into exactly two parts on `"[/INST] "`, `[c, c + len(part0 + "[/INST] ") - 2)` is masked (lengths
  with BOS), then c grows by the round's length with BOS. Everything from the final c on is masked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch

from videollama.text.templates import Conversation, SepStyle, hf_chat_template
from videollama.text.tokenizer import IMAGE_PLACEHOLDER, TextTokenizer

__all__ = [
    "IGNORE_INDEX",
    "INSTRUCT_MAX_LENGTH",
    "blip_caption",
    "tokenize_captions",
    "caption_labels",
    "prompt_wrap_ids",
    "load_caption_prompts",
    "video_instruct_turns",
    "llava_instruct_turns",
    "vicuna_instruct_text",
    "llama2_instruct_text",
    "InstructSample",
    "build_vicuna_sample",
    "build_llama2_sample",
    "build_chat_template_sample",
    "build_instruct_sample",
    "collate_instruct",
    "find_media_span",
]

IGNORE_INDEX = -100
#: Hard-coded truncation length of the official instruction datasets (quirk 27).
INSTRUCT_MAX_LENGTH = 512
#: Caption prompt templates of the stage-2 configs (the LLaMA-2 one keeps its literal backslash-n, quirk 25).
VICUNA_CAPTION_PROMPT_TEMPLATE = "###Human: {} ###Assistant: "
LLAMA2_CAPTION_PROMPT_TEMPLATE = "[INST] <<SYS>>\\n \\n<</SYS>>\\n\\n{} [/INST] "


# ---------------------------------------------------------------------------------------------- caption path
def blip_caption(caption: str, max_words: int = 50) -> str:
    """The official `blip_caption` cleaning (WebVid captions only).

    Lower-case; each of ``. ! " ( ) * # : ;  ~`` becomes a space; runs of 2+ whitespace characters become one
    space; trailing newlines and surrounding spaces are stripped; only the first `max_words` words are kept.
    """
    caption = re.sub(r"([.!\"()*#:;~])", " ", caption.lower())
    caption = re.sub(r"\s{2,}", " ", caption)
    caption = caption.rstrip("\n").strip(" ")
    words = caption.split(" ")
    if len(words) > max_words:
        caption = " ".join(words[:max_words])
    return caption


def tokenize_captions(
    captions: Sequence[str],
    tokenizer: TextTokenizer,
    end_sym: str = "\n",
    max_txt_len: int = 32,
    pad_id: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Caption ids and attention mask, `[B, L]` int64: caption + `end_sym`, no special tokens, truncated to
    `max_txt_len` (which can cut `end_sym`), right-padded to the longest with `pad_id` (default: the
    tokenizer's pad id)."""
    pad = tokenizer.pad_token_id if pad_id is None else pad_id
    if pad is None:
        raise ValueError("tokenize_captions: the tokenizer has no pad id; pass pad_id")
    rows = [tokenizer.encode(c + end_sym, add_bos=False, max_length=max_txt_len) for c in captions]
    width = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


def caption_labels(
    text_ids: torch.Tensor,
    text_attention_mask: torch.Tensor,
    num_prefix_tokens: int,
    pad_id: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels and attention mask for the LLM input `[BOS] + prefix + text`.

    `num_prefix_tokens` = N media tokens (32 VL, 8 AL) plus any prompt tokens wrapped around them. Labels are
    -100 for BOS and the prefix and wherever the text id equals `pad_id`; the attention mask is ones there,
    then the text mask.
    """
    b = text_ids.shape[0]
    head = 1 + int(num_prefix_tokens)
    targets = text_ids.masked_fill(text_ids == pad_id, IGNORE_INDEX)
    labels = torch.cat([torch.full((b, head), IGNORE_INDEX, dtype=torch.long), targets.long()], dim=1)
    mask = torch.cat([torch.ones((b, head), dtype=torch.long), text_attention_mask.long()], dim=1)
    return labels, mask


def prompt_wrap_ids(prompt: str, tokenizer: TextTokenizer) -> tuple[list[int], list[int]]:
    """Ids of the text before and after the single `<ImageHere>` of a caption prompt (no special tokens)."""
    parts = prompt.split(IMAGE_PLACEHOLDER)
    if len(parts) != 2:
        raise ValueError(f"a caption prompt needs exactly one {IMAGE_PLACEHOLDER}, got {len(parts) - 1}: {prompt!r}")
    return tokenizer.encode(parts[0], add_bos=False), tokenizer.encode(parts[1], add_bos=False)


def load_caption_prompts(source: str | Path | Iterable[str], template: str = "{}") -> list[str]:
    """Caption prompts: the lines holding `<ImageHere>` (from a file path or lines), each put in `template`."""
    if isinstance(source, (str, Path)):
        lines = Path(source).read_text(encoding="utf-8").splitlines()
    else:
        lines = list(source)
    return [template.format(line) for line in lines if IMAGE_PLACEHOLDER in line]


# ---------------------------------------------------------------------------------------------- instruct path
def video_instruct_turns(
    qa: Sequence[Mapping[str, str]],
    msg: str,
    num_media_tokens: int,
    data_type: str = "video",
) -> list[dict[str, str]]:
    """VideoChat-Instruct QA pairs to alternating human/gpt turns.

    The first question gets `"<Video>" + "<ImageHere>" * N + "</Video> " + msg` in front (msg = "" when
    `data_type` contains "cn").
    """
    if not qa:
        raise ValueError("video_instruct_turns: empty QA list")
    if "cn" in data_type:
        msg = ""
    turns: list[dict[str, str]] = []
    for i, pair in enumerate(qa):
        q = pair["q"]
        if i == 0:
            q = "<Video>" + IMAGE_PLACEHOLDER * num_media_tokens + "</Video> " + msg + q
        turns.append({"from": "human", "value": q})
        turns.append({"from": "gpt", "value": pair["a"]})
    return turns


def llava_instruct_turns(conversations: Sequence[Mapping[str, str]], num_media_tokens: int) -> list[dict[str, str]]:
    """LLaVA-Instruct turns with every `<image>` replaced by `"<Image>" + "<ImageHere>" * N + "</Image>"`."""
    repl = "<Image>" + IMAGE_PLACEHOLDER * num_media_tokens + "</Image>"
    return [{"from": t["from"], "value": t["value"].replace("<image>", repl)} for t in conversations]


def _vicuna_role(from_str: str) -> str:
    low = from_str.lower()
    if low == "human":
        return "Human"
    if low == "gpt":
        return "Assistant"
    return "unknown"


def _vicuna_parts(turns: Sequence[Mapping[str, str]]) -> tuple[str, list[str]]:
    header = "" + "\n\n"  # empty system + blank line
    formatted = ["###" + _vicuna_role(t["from"]) + ": " + t["value"] + "\n" for t in turns]
    return header, formatted


def vicuna_instruct_text(turns: Sequence[Mapping[str, str]]) -> str:
    """Vicuna training text: `"\\n\\n"` + `"###Role: value\\n"` per turn + a final `"###"`."""
    header, formatted = _vicuna_parts(turns)
    return header + "".join(formatted) + "###"


def _llama2_turns(turns: Sequence[Mapping[str, str]]) -> list[Mapping[str, str]]:
    turns = list(turns)
    roles = {"human": "USER", "gpt": "ASSISTANT"}
    if turns and roles[turns[0]["from"]] != "USER":
        turns = turns[1:]  # a leading gpt turn is dropped
    for j, t in enumerate(turns):
        if roles[t["from"]] != ("USER", "ASSISTANT")[j % 2]:
            raise ValueError(f"llama_v2 instruct: turn {j} is from {t['from']!r}; turns must alternate human/gpt")
    return turns


def llama2_instruct_text(turns: Sequence[Mapping[str, str]], system: str = " ") -> str:
    """LLaMA-2 training text: LLAMA_2 rendering with system `" "` and roles USER/ASSISTANT."""
    conv = Conversation(
        name="llama_v2_instruct",
        system=system,
        roles=("USER", "ASSISTANT"),
        sep_style=SepStyle.LLAMA_2,
        sep="<s>",
        sep2="</s>",
    )
    for t in _llama2_turns(turns):
        conv.append_message("USER" if t["from"] == "human" else "ASSISTANT", t["value"])
    return conv.get_prompt()


@dataclass
class InstructSample:
    """One instruction sample: its text, token ids and labels (same length)."""

    text: str
    input_ids: list[int]
    labels: list[int]


def _mask(labels: list[int], start: int, stop: int) -> None:
    # python slice semantics, exactly like the official tensor slice assignment
    n = len(labels[start:stop])
    labels[start:stop] = [IGNORE_INDEX] * n


def _default_pad(tokenizer: TextTokenizer) -> int:
    # the official instruction datasets set pad = unk (0 for LLaMA)
    for v in (tokenizer.unk_token_id, tokenizer.pad_token_id):
        if v is not None:
            return int(v)
    raise ValueError("the tokenizer has neither an unk nor a pad id")


def build_vicuna_sample(
    turns: Sequence[Mapping[str, str]],
    tokenizer: TextTokenizer,
    max_length: int = INSTRUCT_MAX_LENGTH,
    pad_id: int | None = None,
) -> InstructSample:
    """Vicuna instruction sample with the official per-turn masking (see the module doc).

    Turn lengths count the ids that differ from the pad id (unk by default), each tokenized with BOS and
    truncated at `max_length`, as the official `_tokenize_fn` does.
    """
    pad = _default_pad(tokenizer) if pad_id is None else pad_id
    header, formatted = _vicuna_parts(turns)
    text = header + "".join(formatted) + "###"
    input_ids = tokenizer.encode(text, add_bos=True, max_length=max_length)
    labels = list(input_ids)

    def length(s: str) -> int:
        return sum(1 for i in tokenizer.encode(s, add_bos=True, max_length=max_length) if i != pad)

    cur = length(header)
    _mask(labels, 0, cur)
    for t, s in zip(turns, formatted):
        n = length(s)
        if t["from"] == "human":
            _mask(labels, cur + 2, cur + n)
        cur += n
    return InstructSample(text=text, input_ids=input_ids, labels=labels)


def build_llama2_sample(
    turns: Sequence[Mapping[str, str]],
    tokenizer: TextTokenizer,
    max_length: int = INSTRUCT_MAX_LENGTH,
    system: str = " ",
) -> InstructSample:
    """LLaMA-2 instruction sample with the official round-based masking (see the module doc)."""
    text = llama2_instruct_text(turns, system=system)
    input_ids = tokenizer.encode(text, add_bos=True, max_length=max_length)
    labels = list(input_ids)
    sep = "[/INST] "
    cur = 1
    _mask(labels, 0, cur)
    for rou in text.split("</s>"):
        if rou == "":
            break
        parts = rou.split(sep)
        if len(parts) != 2:
            break
        round_len = len(tokenizer.encode(rou, add_bos=True))
        instruction_len = len(tokenizer.encode(parts[0] + sep, add_bos=True)) - 2
        _mask(labels, cur, cur + instruction_len)
        cur += round_len
    _mask(labels, cur, len(labels))
    return InstructSample(text=text, input_ids=input_ids, labels=labels)


def build_chat_template_sample(
    turns: Sequence[Mapping[str, str]],
    tokenizer: TextTokenizer,
    max_length: int = INSTRUCT_MAX_LENGTH,
    system: str = "",
) -> InstructSample:
    """Instruction sample rendered by the LLM's own chat template (not an official path: for non-LLaMA LLMs).

    The text is exactly what inference renders for the same turns (`hf_chat_template`). Targets are every
    assistant reply with the template's end-of-turn text after it; everything else is masked. The text is
    tokenized piece by piece (prompt, reply, prompt, ...), each piece without BOS except the first, which
    matches tokenizing the whole text because chat templates put special tokens at every piece boundary.
    """
    conv = hf_chat_template(tokenizer, system=system)
    turns = _llama2_turns(turns)
    pieces: list[tuple[str, bool]] = []  # (text, is_target)
    done = ""
    for t in turns:
        if t["from"] == "human":
            conv.append_message(conv.roles[0], t["value"])
            continue
        conv.append_message(conv.roles[1], None)
        prompt = conv.get_prompt()
        conv.messages[-1][1] = t["value"]
        full = conv.get_prompt()
        if not (prompt.startswith(done) and full.startswith(prompt)):
            raise ValueError("the chat template does not render a conversation as a prefix of its continuation")
        pieces += [(prompt[len(done):], False), (full[len(prompt):], True)]
        done = full
    input_ids: list[int] = []
    labels: list[int] = []
    for k, (text, target) in enumerate(pieces):
        ids = tokenizer.encode(text, add_bos=k == 0)
        input_ids += ids
        labels += ids if target else [IGNORE_INDEX] * len(ids)
    return InstructSample(text=done, input_ids=input_ids[:max_length], labels=labels[:max_length])


def build_instruct_sample(
    turns: Sequence[Mapping[str, str]],
    tokenizer: TextTokenizer,
    model_type: str,
    max_length: int = INSTRUCT_MAX_LENGTH,
    system: str = "",
) -> InstructSample:
    """Dispatch on the official `model_type`: `"vicuna"` or `"llama_v2"` (`"llama_2"` accepted too), or
    `"chat_template"` (the LLM's own template; `system` is used only there)."""
    if model_type == "vicuna":
        return build_vicuna_sample(turns, tokenizer, max_length=max_length)
    if model_type in ("llama_v2", "llama_2"):
        return build_llama2_sample(turns, tokenizer, max_length=max_length)
    if model_type == "chat_template":
        return build_chat_template_sample(turns, tokenizer, max_length=max_length, system=system)
    raise ValueError(f"unknown instruct model_type {model_type!r}; expected 'vicuna', 'llama_v2' or 'chat_template'")


def collate_instruct(samples: Sequence[InstructSample | Mapping[str, Any]], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Right-pad a batch: `input_ids` with `pad_id` (official: unk 0), `labels` with -100, and
    `attention_mask = input_ids != pad_id` (int64; the official one is bool)."""
    ids_list = [list(s.input_ids if isinstance(s, InstructSample) else s["input_ids"]) for s in samples]
    lab_list = [list(s.labels if isinstance(s, InstructSample) else s["labels"]) for s in samples]
    width = max((len(x) for x in ids_list), default=0)
    input_ids = torch.full((len(ids_list), width), pad_id, dtype=torch.long)
    labels = torch.full((len(ids_list), width), IGNORE_INDEX, dtype=torch.long)
    for i, (a, b) in enumerate(zip(ids_list, lab_list)):
        if len(a) != len(b):
            raise ValueError(f"sample {i}: {len(a)} input ids but {len(b)} labels")
        input_ids[i, : len(a)] = torch.tensor(a, dtype=torch.long)
        labels[i, : len(b)] = torch.tensor(b, dtype=torch.long)
    return {"input_ids": input_ids, "labels": labels, "attention_mask": (input_ids != pad_id).long()}


def find_media_span(ids: Sequence[int] | torch.Tensor, media_token_id: int, count: int) -> int:
    """Start of the run of exactly `count` consecutive media ids in one row (SPEC §1.11b).

    Raises ValueError when the row holds another number of media ids or they are not consecutive.
    """
    row = [int(x) for x in (ids.tolist() if isinstance(ids, torch.Tensor) else ids)]
    pos = [i for i, x in enumerate(row) if x == media_token_id]
    if len(pos) != count:
        raise ValueError(f"the row holds {len(pos)} media placeholder ids, expected {count}")
    if count and pos != list(range(pos[0], pos[0] + count)):
        raise ValueError("the media placeholder ids are not consecutive")
    return pos[0] if pos else -1
