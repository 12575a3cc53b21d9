"""The HF-tokenizer adapter and the `hf_chat` template kind (any LLM with its own chat template)."""

from __future__ import annotations

import pytest

from videollama.text import templates as T
from videollama.text.prompt import build_prompt_segments
from videollama.text.tokenizer import HFTokenizer, LegacyLlamaTokenizer, TextTokenizer, load_tokenizer

from .conftest import SETS

pytestmark = pytest.mark.skipif(not SETS, reason="no official fixture sets found")

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture
def hf_tok():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(SETS[0] / "llama"), local_files_only=True)
    tok.chat_template = CHAT_TEMPLATE
    return HFTokenizer(tok)


def test_protocol(hf_tok, any_tokenizer):
    assert isinstance(hf_tok, TextTokenizer)
    assert isinstance(any_tokenizer, TextTokenizer)
    assert isinstance(load_tokenizer(SETS[0] / "llama"), LegacyLlamaTokenizer)


def test_adapter_ids(hf_tok):
    assert hf_tok.image_token_id != hf_tok.audio_token_id
    ids = hf_tok.encode("a <ImageHere> b", add_bos=True)
    assert ids[0] == hf_tok.bos_token_id and hf_tok.image_token_id in ids
    assert hf_tok.encode("a", add_bos=False)[0] != hf_tok.bos_token_id
    assert len(hf_tok.encode("word " * 50, add_bos=True, max_length=7)) == 7
    assert "<ImageHere>" in hf_tok.decode(ids)


def test_hf_chat_template(hf_tok):
    conv = T.hf_chat_template(hf_tok, system="SYS")
    conv.upload_image()
    conv.ask("Q?")
    conv.start_answer()
    prompt = conv.get_prompt()
    # BOS text is removed (the tokenizer adds BOS to segment 0); placeholders are kept
    assert prompt == "<|system|>SYS</s><|user|><Image><ImageHere></Image>  Q?</s><|assistant|>"
    seg = build_prompt_segments(conv, hf_tok, num_media=1)
    assert seg.ids[0][0] == hf_tok.bos_token_id
    assert T.stop_sequences(conv, hf_tok) == [[hf_tok.eos_token_id]]
    ids = hf_tok.encode("It is red.", add_bos=True) + [hf_tok.eos_token_id]
    assert T.postprocess_answer(ids, hf_tok, conv) == "It is red."


def test_derived_stop_ids_for_single_style(hf_tok):
    stops = T.stop_sequences(T.get_template("vicuna"), hf_tok)
    assert stops and all(isinstance(s, list) and s for s in stops)
    assert hf_tok.encode("###", add_bos=False) in stops
