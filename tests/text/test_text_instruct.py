"""Training text helpers: blip_caption, llava conversion, masking on synthetic conversations, collate."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from videollama.text import instruct as I
from videollama.text.tokenizer import LegacyLlamaTokenizer


def test_blip_caption():
    assert I.blip_caption('A Dog. Running!!  "fast" (now)~ ') == "a dog running fast now"
    assert I.blip_caption("one two three", max_words=2) == "one two"
    assert I.blip_caption("Tab\there") == "tab\there"  # a single whitespace char is kept as is
    assert I.blip_caption("x:y;z#") == "x y z"


def test_llava_conversion():
    turns = I.llava_instruct_turns(
        [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A cat."}], 3
    )
    assert turns[0]["value"] == "<Image>" + "<ImageHere>" * 3 + "</Image>\nWhat is it?"
    assert turns[1] == {"from": "gpt", "value": "A cat."}


def test_video_turns_cn_drops_msg():
    qa = [{"q": "Q", "a": "A"}]
    assert I.video_instruct_turns(qa, "MSG ", 2)[0]["value"] == "<Video><ImageHere><ImageHere></Video> MSG Q"
    assert I.video_instruct_turns(qa, "MSG ", 2, data_type="video_cn")[0]["value"] == (
        "<Video><ImageHere><ImageHere></Video> Q"
    )


def test_vicuna_masking_rule(any_tokenizer):
    tok = any_tokenizer
    turns = [
        {"from": "human", "value": "<Image><ImageHere></Image>\nQ one?"},
        {"from": "gpt", "value": "Answer one."},
        {"from": "human", "value": "Q two?"},
        {"from": "gpt", "value": "Answer two."},
    ]
    s = I.build_vicuna_sample(turns, tok)
    assert s.text == "\n\n###Human: <Image><ImageHere></Image>\nQ one?\n###Assistant: Answer one.\n" \
        "###Human: Q two?\n###Assistant: Answer two.\n###"
    lens = [len(tok.encode(x, add_bos=True)) for x in
            ["\n\n"] + ["###" + r + ": " + t["value"] + "\n" for r, t in zip(["Human", "Assistant"] * 2, turns)]]
    want = list(s.input_ids)
    cur = lens[0]
    want[:cur] = [-100] * cur
    for n, t in zip(lens[1:], turns):
        if t["from"] == "human":
            want[cur + 2: cur + n] = [-100] * len(want[cur + 2: cur + n])
        cur += n
    assert s.labels == want
    assert len(s.labels) == len(s.input_ids)


def test_llama2_text_and_alternation(any_tokenizer):
    tok = any_tokenizer
    turns = [
        {"from": "gpt", "value": "dropped"},
        {"from": "human", "value": "Q1"},
        {"from": "gpt", "value": "A1"},
        {"from": "human", "value": "Q2"},
        {"from": "gpt", "value": "A2"},
    ]
    s = I.build_llama2_sample(turns, tok)
    assert s.text == "[INST] <<SYS>>\n \n<</SYS>>\n\nQ1 [/INST] A1 </s><s>[INST] Q2 [/INST] A2 </s>"
    assert s.labels[0] == -100 and len(s.labels) == len(s.input_ids)
    # every kept label is a real token of the answer rounds
    assert any(x != -100 for x in s.labels)
    with pytest.raises(ValueError):
        I.build_llama2_sample([{"from": "human", "value": "a"}, {"from": "human", "value": "b"}], tok)
    with pytest.raises(ValueError):
        I.build_instruct_sample(turns, tok, "mistral")


def test_truncation_512(any_tokenizer):
    tok = any_tokenizer
    turns = [{"from": "human", "value": "word " * 600}, {"from": "gpt", "value": "ok"}]
    for mt in ("vicuna", "llama_v2"):
        s = I.build_instruct_sample(turns, tok, mt)
        assert len(s.input_ids) == 512 == len(s.labels)


def test_collate_right_pads():
    a = I.InstructSample("a", [1, 5, 6], [-100, 5, 6])
    b = I.InstructSample("b", [1, 7], [-100, 7])
    out = I.collate_instruct([a, b], pad_id=0)
    assert out["input_ids"].tolist() == [[1, 5, 6], [1, 7, 0]]
    assert out["labels"].tolist() == [[-100, 5, 6], [-100, 7, -100]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert out["attention_mask"].dtype == torch.long


def test_caption_batch_padding_and_truncation(any_tokenizer):
    tok = any_tokenizer
    ids, mask = I.tokenize_captions(["a b c d e f g h", "a"], tok, "\n", max_txt_len=5)
    assert ids.shape[1] == 5
    assert mask[1].tolist() == [1] * len(tok.encode("a\n", add_bos=False)) + [0] * (5 - len(tok.encode("a\n", add_bos=False)))
    assert (ids[1][mask[1] == 0] == tok.pad_token_id).all()
    labels, att = I.caption_labels(ids, mask, 4, tok.pad_token_id)
    assert labels.shape == (2, 1 + 4 + 5) and (labels[:, :5] == -100).all()
    assert (labels[1, 5:][mask[1] == 0] == -100).all()
    assert att[:, :5].eq(1).all()


def test_prompt_wrap_and_prompt_file(tmp_path, any_tokenizer):
    f = tmp_path / "p.txt"
    f.write_text("<Image><ImageHere></Image> Describe.\nno placeholder\n")
    prompts = I.load_caption_prompts(f, I.VICUNA_CAPTION_PROMPT_TEMPLATE)
    assert prompts == ["###Human: <Image><ImageHere></Image> Describe. ###Assistant: "]
    before, after = I.prompt_wrap_ids(prompts[0], any_tokenizer)
    assert before == any_tokenizer.encode("###Human: <Image>", add_bos=False)
    assert "\\n" in I.LLAMA2_CAPTION_PROMPT_TEMPLATE  # literal backslash-n (quirk 25)


def test_find_media_span():
    assert I.find_media_span([1, 9, 9, 9, 4], 9, 3) == 1
    with pytest.raises(ValueError):
        I.find_media_span([1, 9, 4, 9, 9], 9, 3)
    with pytest.raises(ValueError):
        I.find_media_span([1, 9, 9], 9, 3)


def test_vicuna_v0_pad_folder(tmp_path, any_tokenizer):
    """A `[PAD]` added token (Vicuna v0) shifts the placeholders by one and stays the model pad."""
    shutil.copy(any_tokenizer.model_file, tmp_path / "tokenizer.model")
    v = any_tokenizer.vocab_size
    (tmp_path / "added_tokens.json").write_text(json.dumps({"[PAD]": v}))
    (tmp_path / "special_tokens_map.json").write_text(json.dumps({"pad_token": "[PAD]"}))
    tok = LegacyLlamaTokenizer.from_pretrained(tmp_path)
    assert (tok.pad_token_id, tok.image_token_id, tok.audio_token_id, len(tok)) == (v, v + 1, v + 2, v + 3)
    assert tok.unk_token_id == any_tokenizer.unk_token_id
