"""Tokenizers for the text layer.

`LegacyLlamaTokenizer` reproduces, id for id, what the official Video-LLaMA runtime got from the slow
`LlamaTokenizer` of transformers 4.28 ("legacy" SentencePiece behaviour, SPEC §1.9):

* the text is cut at every added / special token (longest match, left to right);
* around a cut token the neighbouring text is stripped of whitespace, following the 4.28 rule: a token
  registered as a special token with `AddedToken` flags strips only where its `lstrip`/`rstrip` flag says
  so (for LLaMA's `<s>`, `</s>`, `<unk>`, `[PAD]` that means never), while any other added token
  (`<ImageHere>`, `<AudioHere>`, and special tokens given as plain strings in `special_tokens_map.json`)
  strips the text on **both** sides;
* every remaining text piece is SentencePiece-encoded on its own, each with its own dummy-prefix `▁`;
* BOS is prepended when asked (`add_bos_token` from the folder's config), EOS never by default.

Decoding follows 4.28's slow `decode(..., skip_special_tokens=False)`: added tokens are joined to the
surrounding text with single spaces, and a special token inside SentencePiece text gets a space in front
of it unless it comes first or right after another special token.

`HFTokenizer` wraps any Hugging Face tokenizer (Mistral, Qwen, ...) behind the same small protocol,
`TextTokenizer`, so the prompt and training code need not know which one it has.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Protocol, Sequence, runtime_checkable

from videollama.errors import CheckpointError

IMAGE_PLACEHOLDER = "<ImageHere>"
AUDIO_PLACEHOLDER = "<AudioHere>"

__all__ = [
    "IMAGE_PLACEHOLDER",
    "AUDIO_PLACEHOLDER",
    "TextTokenizer",
    "TokenSpec",
    "LegacyLlamaTokenizer",
    "HFTokenizer",
    "load_tokenizer",
]


@runtime_checkable
class TextTokenizer(Protocol):
    """What the text layer needs from a tokenizer (LLaMA legacy emulation or a wrapped HF tokenizer)."""

    @property
    def bos_token_id(self) -> int | None: ...

    @property
    def eos_token_id(self) -> int | None: ...

    @property
    def pad_token_id(self) -> int | None: ...

    @property
    def unk_token_id(self) -> int | None: ...

    @property
    def image_token_id(self) -> int: ...

    @property
    def audio_token_id(self) -> int: ...

    def encode(self, text: str, add_bos: bool = True, max_length: int | None = None) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def __len__(self) -> int: ...


@dataclass(frozen=True)
class TokenSpec:
    """One no-split token: its text and the whitespace it eats on each side.

    `strip_left` removes whitespace at the end of the text before the token, `strip_right` at the start of
    the text after it (4.28: `AddedToken.lstrip` / `AddedToken.rstrip`; plain added tokens strip both).
    """

    content: str
    strip_left: bool = True
    strip_right: bool = True

    @staticmethod
    def from_config(value: Any, wrap_plain: bool) -> "TokenSpec | None":
        """Parse a token entry of tokenizer_config / special_tokens_map.

        A dict is an `AddedToken` (its flags count). A plain string is wrapped into a no-strip `AddedToken`
        when `wrap_plain` (what `LlamaTokenizer.__init__` does to its init kwargs), otherwise it stays a plain
        string, which 4.28 strips on both sides.
        """
        if value is None:
            return None
        if isinstance(value, dict):
            return TokenSpec(
                str(value.get("content", "")),
                strip_left=bool(value.get("lstrip", False)),
                strip_right=bool(value.get("rstrip", False)),
            )
        if isinstance(value, str):
            if wrap_plain:
                return TokenSpec(value, strip_left=False, strip_right=False)
            return TokenSpec(value, strip_left=True, strip_right=True)
        raise CheckpointError(f"tokenizer config: cannot read token entry {value!r}")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        with path.open(encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read JSON ({exc})") from exc
    return data if isinstance(data, dict) else {}


_SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token")


class LegacyLlamaTokenizer:
    """Exact emulation of transformers-4.28 slow `LlamaTokenizer` on top of the `sentencepiece` library.

    Build it with `from_pretrained(folder)`; by default it also does what the official model does after
    loading: pad = unk when the folder has no pad token, then `<ImageHere>` and `<AudioHere>` are added
    (ids `len(tokenizer)` and `len(tokenizer)+1` at that moment).
    """

    def __init__(
        self,
        model_file: str | Path,
        *,
        bos_token: TokenSpec | None = TokenSpec("<s>", False, False),
        eos_token: TokenSpec | None = TokenSpec("</s>", False, False),
        unk_token: TokenSpec | None = TokenSpec("<unk>", False, False),
        pad_token: TokenSpec | None = None,
        additional_special_tokens: Sequence[TokenSpec] = (),
        add_bos_token: bool = True,
        add_eos_token: bool = False,
        clean_up_tokenization_spaces: bool = False,
    ) -> None:
        import sentencepiece as spm

        self.model_file = Path(model_file)
        if not self.model_file.is_file():
            raise CheckpointError(f"{self.model_file}: SentencePiece model not found")
        try:
            self.sp = spm.SentencePieceProcessor(model_file=str(self.model_file))
        except (OSError, RuntimeError) as exc:
            raise CheckpointError(f"{self.model_file}: cannot load SentencePiece model ({exc})") from exc
        self._special: dict[str, TokenSpec | None] = {
            "bos_token": bos_token,
            "eos_token": eos_token,
            "unk_token": unk_token,
            "pad_token": pad_token,
        }
        self._additional: list[TokenSpec] = list(additional_special_tokens)
        self.add_bos_token = add_bos_token
        self.add_eos_token = add_eos_token
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        self.added_tokens_encoder: dict[str, int] = {}
        self.added_tokens_decoder: dict[int, str] = {}
        self._extra_no_split: set[str] = set()
        self._no_split: set[str] = set()
        self._refresh_no_split()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        *,
        pad_to_unk: bool = True,
        add_media_tokens: bool = True,
    ) -> "LegacyLlamaTokenizer":
        """Load a Hugging Face LLaMA tokenizer folder the way transformers 4.28 (slow) did.

        Reads `tokenizer.model`, `tokenizer_config.json`, `special_tokens_map.json` and `added_tokens.json`
        (or, for folders saved by newer transformers, `added_tokens_decoder` in the config).
        `pad_to_unk`: set pad = unk when the folder has none (official `VideoLLAMA.__init__`).
        `add_media_tokens`: add `<ImageHere>` then `<AudioHere>` as the official model does.
        """
        folder = Path(folder)
        model_file = folder / "tokenizer.model"
        if not model_file.is_file():
            raise CheckpointError(f"{folder}: no tokenizer.model (a LLaMA SentencePiece tokenizer is required)")
        cfg = _read_json(folder / "tokenizer_config.json")
        stm = _read_json(folder / "special_tokens_map.json")

        # 1) LlamaTokenizer.__init__ with the tokenizer_config kwargs: plain strings are wrapped (no strip).
        specials: dict[str, TokenSpec | None] = {
            "bos_token": TokenSpec("<s>", False, False),
            "eos_token": TokenSpec("</s>", False, False),
            "unk_token": TokenSpec("<unk>", False, False),
            "pad_token": None,
        }
        for key in _SPECIAL_KEYS:
            if key in cfg:
                specials[key] = TokenSpec.from_config(cfg[key], wrap_plain=True)
        additional = [
            s for s in (TokenSpec.from_config(v, wrap_plain=False) for v in cfg.get("additional_special_tokens") or [])
            if s is not None
        ]
        # 2) special_tokens_map.json is applied afterwards with setattr: dicts -> AddedToken, strings stay plain.
        for key, value in stm.items():
            if key in _SPECIAL_KEYS:
                specials[key] = TokenSpec.from_config(value, wrap_plain=False)
            elif key == "additional_special_tokens" and isinstance(value, list):
                additional = [s for s in (TokenSpec.from_config(v, wrap_plain=False) for v in value) if s]

        tok = cls(
            model_file,
            bos_token=specials["bos_token"],
            eos_token=specials["eos_token"],
            unk_token=specials["unk_token"],
            pad_token=specials["pad_token"],
            additional_special_tokens=additional,
            add_bos_token=bool(cfg.get("add_bos_token", True)),
            add_eos_token=bool(cfg.get("add_eos_token", False)),
            clean_up_tokenization_spaces=bool(cfg.get("clean_up_tokenization_spaces", False)),
        )

        # 3) added tokens (e.g. Vicuna v0's "[PAD]" = 32000), in id order.
        added = _read_json(folder / "added_tokens.json")
        if not added and isinstance(cfg.get("added_tokens_decoder"), dict):
            size = tok.sp.get_piece_size()
            added = {
                str(v.get("content")): int(k)
                for k, v in cfg["added_tokens_decoder"].items()
                if isinstance(v, dict) and int(k) >= size
            }
        for content, index in sorted(added.items(), key=lambda kv: kv[1]):
            if int(index) != len(tok):
                raise CheckpointError(
                    f"{folder}: added token {content!r} has id {index}, expected {len(tok)} (ids must follow the vocab)"
                )
            tok.add_tokens([content])

        if pad_to_unk and tok._special["pad_token"] is None and tok._special["unk_token"] is not None:
            # official: `tokenizer.pad_token = tokenizer.unk_token` (a plain string, looked up as the unk AddedToken)
            tok._special["pad_token"] = tok._special["unk_token"]
            tok._refresh_no_split()
        if add_media_tokens:
            tok.add_tokens([IMAGE_PLACEHOLDER])
            tok.add_tokens([AUDIO_PLACEHOLDER])
        return tok

    def _refresh_no_split(self) -> None:
        no_split = set(self.added_tokens_encoder) | self._extra_no_split
        for spec in list(self._special.values()) + self._additional:
            if spec is not None and spec.content:
                no_split.add(spec.content)
        self._no_split = no_split
        self._by_first: dict[str, list[str]] = {}
        for t in no_split:
            self._by_first.setdefault(t[0], []).append(t)
        for lst in self._by_first.values():
            lst.sort(key=len, reverse=True)
        # strip rules: tokens registered as special with AddedToken flags use them, all others strip both sides
        rules: dict[str, tuple[bool, bool]] = {}
        for spec in list(self._special.values()) + self._additional:
            if spec is not None and spec.content not in rules:
                rules[spec.content] = (spec.strip_left, spec.strip_right)
        self._strip_rules = rules

    def add_tokens(self, tokens: Sequence[str]) -> int:
        """Add tokens like 4.28 `add_tokens(..., special_tokens=True)`; returns how many got new ids.

        A token already in the SentencePiece vocab or already added keeps its id but is still never split.
        """
        n = 0
        for token in tokens:
            if token in self.added_tokens_encoder:
                continue
            if token != self._content("unk_token") and self._sp_id(token) == self._sp_id(self._content("unk_token")):
                idx = len(self)
                self.added_tokens_encoder[token] = idx
                self.added_tokens_decoder[idx] = token
                n += 1
            else:
                # a token that already has an id is only registered as never-split (it strips both sides)
                self._extra_no_split.add(token)
        self._refresh_no_split()
        return n

    def _content(self, key: str) -> str | None:
        spec = self._special.get(key)
        return spec.content if spec is not None else None

    def _sp_id(self, piece: str | None) -> int:
        if piece is None:
            return -1
        return int(self.sp.piece_to_id(piece))

    # ------------------------------------------------------------------ properties
    def _token_id(self, key: str) -> int | None:
        content = self._content(key)
        if content is None:
            return None
        return self.convert_token_to_id(content)

    @property
    def bos_token_id(self) -> int | None:
        """Id of BOS (`<s>`, 1 for LLaMA)."""
        return self._token_id("bos_token")

    @property
    def eos_token_id(self) -> int | None:
        """Id of EOS (`</s>`, 2 for LLaMA)."""
        return self._token_id("eos_token")

    @property
    def unk_token_id(self) -> int | None:
        """Id of `<unk>` (0 for LLaMA); the pad id of the official instruction datasets."""
        return self._token_id("unk_token")

    @property
    def pad_token_id(self) -> int | None:
        """Id of the pad token (unk for LLaMA-2, `[PAD]` 32000 for Vicuna v0)."""
        return self._token_id("pad_token")

    @property
    def image_token_id(self) -> int:
        """Id of `<ImageHere>`."""
        return self.convert_token_to_id(IMAGE_PLACEHOLDER)

    @property
    def audio_token_id(self) -> int:
        """Id of `<AudioHere>`."""
        return self.convert_token_to_id(AUDIO_PLACEHOLDER)

    @property
    def vocab_size(self) -> int:
        """SentencePiece vocabulary size (without added tokens)."""
        return int(self.sp.get_piece_size())

    @property
    def all_special_tokens(self) -> list[str]:
        """Text of bos/eos/unk/pad and additional special tokens (4.28 `all_special_tokens`)."""
        out: list[str] = []
        for spec in list(self._special.values()) + self._additional:
            if spec is not None and spec.content not in out:
                out.append(spec.content)
        return out

    def __len__(self) -> int:
        return self.vocab_size + len(self.added_tokens_encoder)

    def convert_token_to_id(self, token: str) -> int:
        """Id of one token (added tokens first, then SentencePiece; unknown pieces give the unk id)."""
        if token in self.added_tokens_encoder:
            return self.added_tokens_encoder[token]
        return self._sp_id(token)

    # ------------------------------------------------------------------ encoding
    def split_on_added_tokens(self, text: str) -> list[str]:
        """Cut `text` at every never-split token (longest match, left to right); no empty pieces."""
        out: list[str] = []
        start = 0
        i = 0
        n = len(text)
        while i < n:
            cands = self._by_first.get(text[i])
            hit = None
            if cands:
                for t in cands:
                    if text.startswith(t, i):
                        hit = t
                        break
            if hit is None:
                i += 1
                continue
            if i > start:
                out.append(text[start:i])
            out.append(hit)
            i += len(hit)
            start = i
        if start < n:
            out.append(text[start:])
        return out

    def tokenize(self, text: str) -> list[str]:
        """Token strings exactly as 4.28 `LlamaTokenizer.tokenize` (added tokens whole, SentencePiece pieces)."""
        out: list[str] = []
        for is_added, part in self._tokenize_parts(text):
            if is_added:
                out.append(part)
            else:
                out.extend(self.sp.encode(part, out_type=str))
        return out

    def _tokenize_parts(self, text: str) -> list[tuple[bool, str]]:
        parts = self.split_on_added_tokens(text)
        for i, part in enumerate(parts):
            if part not in self._no_split:
                continue
            strip_left, strip_right = self._strip_rules.get(part, (True, True))
            if strip_right and i + 1 < len(parts) and parts[i + 1]:
                parts[i + 1] = parts[i + 1].lstrip()
            if strip_left and i > 0 and parts[i - 1]:
                parts[i - 1] = parts[i - 1].rstrip()
        return [(p in self._no_split, p) for p in parts if p]

    def encode(self, text: str, add_bos: bool = True, max_length: int | None = None) -> list[int]:
        """Token ids of `text` as 4.28 `tokenizer(text, add_special_tokens=add_bos).input_ids`.

        `max_length` truncates like `truncation=True, max_length=...` (special tokens count towards it).
        """
        ids: list[int] = []
        for is_added, part in self._tokenize_parts(text):
            if is_added:
                ids.append(self.convert_token_to_id(part))
            else:
                ids.extend(int(x) for x in self.sp.encode(part))
        prefix: list[int] = []
        suffix: list[int] = []
        if add_bos and self.add_bos_token and self.bos_token_id is not None:
            prefix = [self.bos_token_id]
        if add_bos and self.add_eos_token and self.eos_token_id is not None:
            suffix = [self.eos_token_id]
        if max_length is not None:
            keep = max(max_length - len(prefix) - len(suffix), 0)
            ids = ids[:keep]
        return prefix + ids + suffix

    def __call__(self, text: str, add_special_tokens: bool = True, max_length: int | None = None) -> list[int]:
        """Shortcut for `encode`."""
        return self.encode(text, add_bos=add_special_tokens, max_length=max_length)

    # ------------------------------------------------------------------ decoding
    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        """Token strings of `ids` (added tokens by text, others by SentencePiece piece)."""
        out = []
        for i in ids:
            i = int(i)
            if i in self.added_tokens_decoder:
                out.append(self.added_tokens_decoder[i])
            else:
                if not 0 <= i < self.vocab_size:
                    raise ValueError(f"token id {i} is outside the vocabulary (size {len(self)})")
                out.append(self.sp.id_to_piece(i))
        return out

    def _pieces_to_string(self, tokens: list[str]) -> str:
        special = set(self.all_special_tokens)
        out = ""
        current: list[str] = []
        prev_special = False
        for i, token in enumerate(tokens):
            if token in special:
                if not prev_special and i != 0:
                    out += " "
                out += self.sp.decode(current) + token
                prev_special = True
                current = []
            else:
                current.append(token)
                prev_special = False
        return out + self.sp.decode(current)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids` as 4.28 slow `decode(ids)` (special tokens kept, spaces between added tokens)."""
        tokens = self.convert_ids_to_tokens(ids)
        sub_texts: list[str] = []
        current: list[str] = []
        for token in tokens:
            if token in self.added_tokens_encoder:
                if current:
                    sub_texts.append(self._pieces_to_string(current))
                    current = []
                sub_texts.append(token)
            else:
                current.append(token)
        if current:
            sub_texts.append(self._pieces_to_string(current))
        text = " ".join(sub_texts)
        if self.clean_up_tokenization_spaces:
            text = _clean_up_tokenization(text)
        return text

    def __repr__(self) -> str:
        return f"LegacyLlamaTokenizer({str(self.model_file)!r}, len={len(self)})"


def _clean_up_tokenization(s: str) -> str:
    for a, b in (
        (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
        (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
    ):
        s = s.replace(a, b)
    return s


class HFTokenizer:
    """Adapter that gives any Hugging Face tokenizer the `TextTokenizer` interface.

    The media placeholders are added as special tokens when missing. `encode` never lets the tokenizer add
    its own special tokens; BOS is put in front only when asked and when the tokenizer has one.
    """

    def __init__(self, tokenizer: Any, *, add_media_tokens: bool = True) -> None:
        self.hf = tokenizer
        if add_media_tokens:
            vocab = tokenizer.get_vocab()
            missing = [t for t in (IMAGE_PLACEHOLDER, AUDIO_PLACEHOLDER) if t not in vocab]
            if missing:
                tokenizer.add_tokens(missing, special_tokens=True)

    @classmethod
    def from_pretrained(cls, folder: str | Path, **kwargs: Any) -> "HFTokenizer":
        """Load with `transformers.AutoTokenizer` from a local folder (never from the hub)."""
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(str(folder), local_files_only=True, **kwargs))

    @property
    def bos_token_id(self) -> int | None:
        """Id of BOS, or None."""
        return self.hf.bos_token_id

    @property
    def eos_token_id(self) -> int | None:
        """Id of EOS, or None."""
        return self.hf.eos_token_id

    @property
    def unk_token_id(self) -> int | None:
        """Id of the unknown token, or None."""
        return self.hf.unk_token_id

    @property
    def pad_token_id(self) -> int | None:
        """Id of the pad token; falls back to unk, then EOS."""
        for v in (self.hf.pad_token_id, self.hf.unk_token_id, self.hf.eos_token_id):
            if v is not None:
                return v
        return None

    @property
    def image_token_id(self) -> int:
        """Id of `<ImageHere>`."""
        return int(self.hf.convert_tokens_to_ids(IMAGE_PLACEHOLDER))

    @property
    def audio_token_id(self) -> int:
        """Id of `<AudioHere>`."""
        return int(self.hf.convert_tokens_to_ids(AUDIO_PLACEHOLDER))

    @property
    def bos_token(self) -> str | None:
        """Text of BOS, or None."""
        return self.hf.bos_token

    @property
    def eos_token(self) -> str | None:
        """Text of EOS, or None."""
        return self.hf.eos_token

    @property
    def chat_template(self) -> str | None:
        """The wrapped tokenizer's own chat template, if any."""
        return getattr(self.hf, "chat_template", None)

    def apply_chat_template(self, messages: list[dict[str, str]], **kwargs: Any) -> Any:
        """Pass-through to the wrapped tokenizer."""
        return self.hf.apply_chat_template(messages, **kwargs)

    def encode(self, text: str, add_bos: bool = True, max_length: int | None = None) -> list[int]:
        """Ids of `text` without the tokenizer's own special tokens; BOS in front when asked and available."""
        ids = list(self.hf.encode(text, add_special_tokens=False))
        prefix = [self.bos_token_id] if add_bos and self.bos_token_id is not None else []
        if max_length is not None:
            ids = ids[: max(max_length - len(prefix), 0)]
        return prefix + ids

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`, special tokens kept."""
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=False)

    def __len__(self) -> int:
        return len(self.hf)


def load_tokenizer(folder: str | Path, *, legacy: bool | None = None) -> TextTokenizer:
    """Load the tokenizer of an LLM folder.

    `legacy=None` picks the exact 4.28 LLaMA emulation whenever the folder has a `tokenizer.model` and a
    LLaMA tokenizer class (or none named), otherwise wraps `AutoTokenizer`.
    """
    folder = Path(folder)
    if legacy is None:
        cls_name = str(_read_json(folder / "tokenizer_config.json").get("tokenizer_class") or "")
        legacy = (folder / "tokenizer.model").is_file() and (not cls_name or cls_name.startswith("Llama"))
    if legacy:
        return LegacyLlamaTokenizer.from_pretrained(folder)
    return HFTokenizer.from_pretrained(folder)
