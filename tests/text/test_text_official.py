"""Text layer vs. the official fixture sets: every id, label and mask must match exactly."""

from __future__ import annotations

import json

import pytest
import torch

from videollama.text import instruct as I
from videollama.text import prompt as P
from videollama.text import templates as T
from videollama.text.tokenizer import AUDIO_PLACEHOLDER, IMAGE_PLACEHOLDER


def _rows(t: torch.Tensor) -> list[list[int]]:
    return [[int(x) for x in r] for r in t.tolist()]


# ------------------------------------------------------------------------------------------------ tokenizer
def test_added_token_ids(official_set):
    tok = official_set.tokenizer
    llama = official_set.manifest["dims"]["llama"]
    added = llama["added_tokens"]
    assert tok.image_token_id == added[IMAGE_PLACEHOLDER]
    assert tok.audio_token_id == added[AUDIO_PLACEHOLDER]
    assert tok.vocab_size == llama["vocab"]
    assert len(tok) == llama["vocab"] + len(added)
    cfg = json.loads((official_set.llama_dir / "config.json").read_text())
    assert tok.bos_token_id == cfg["bos_token_id"]
    assert tok.eos_token_id == cfg["eos_token_id"]
    assert tok.pad_token_id == tok.unk_token_id  # no pad token in the folder: pad = unk


def _chat_items(official_set):
    chat = official_set.manifest.get("chat") or {}
    if not chat:
        pytest.skip(f"{official_set.name}: no chat section")
    return chat.items()


def _segment_keys(official_set, name):
    keys = []
    i = 0
    while f"chat.{name}.segment_{i}_ids" in official_set.tensors:
        keys.append(f"chat.{name}.segment_{i}_ids")
        i += 1
    return keys


def test_chat_segments_from_recorded_prompt(official_set):
    tok = official_set.tokenizer
    for name, chat in _chat_items(official_set):
        keys = _segment_keys(official_set, name)
        assert keys, f"no segment tensors for {name}"
        seg = P.build_prompt_segments(chat["prompt"], tok, num_media=len(chat["img_list_order"]))
        if "segments" in chat:
            assert seg.texts == chat["segments"]
        assert len(seg.ids) == len(keys)
        for i, key in enumerate(keys):
            assert seg.ids[i] == _rows(official_set.tensors[key])[0], f"{name} segment {i}"
        # only segment 0 starts with BOS
        assert seg.ids[0][0] == tok.bos_token_id


def _build_conv(name: str, chat: dict) -> tuple[T.Conversation, list[str]]:
    conv = T.get_template(name)
    order = chat["img_list_order"]
    if order == ["audio", "video"]:
        got = conv.upload_video(with_audio=True)
    elif order == ["video"]:
        got = conv.upload_video(chat.get("video_msg", ""), system=chat.get("system"))
    elif order == ["image"]:
        got = conv.upload_image(system=chat.get("system"))
    else:
        pytest.skip(f"media order {order} not covered")
    assert got == order
    conv.ask(chat["question"])
    conv.start_answer()
    return conv, got


def test_chat_prompt_built_from_templates(official_set):
    tok = official_set.tokenizer
    for name, chat in _chat_items(official_set):
        conv, _ = _build_conv(name, chat)
        prompt = conv.get_prompt()
        assert prompt == chat["prompt"], name
        seg = P.build_prompt_segments(conv, tok, num_media=len(chat["img_list_order"]))
        for i, key in enumerate(_segment_keys(official_set, name)):
            assert seg.ids[i] == _rows(official_set.tensors[key])[0], f"{name} segment {i}"


def test_chat_stop_ids(official_set):
    for name, chat in _chat_items(official_set):
        conv = T.get_template(name)
        want = chat.get("generate_kwargs", {}).get("stopping_criteria")
        if want is None:
            continue
        assert T.stop_sequences(conv, official_set.tokenizer) == want
        assert T.stop_sequences(conv) == want


def test_generated_ids_decode(official_set):
    tok = official_set.tokenizer
    for name, chat in _chat_items(official_set):
        key = f"chat.{name}.generated_ids"
        if key not in official_set.tensors:
            continue
        ids = _rows(official_set.tensors[key])[0]
        if "generated_ids" in chat:
            assert ids == chat["generated_ids"]
        if "generated_text" in chat:
            assert tok.decode(ids) == chat["generated_text"]
        # post-processing runs and drops the leading BOS that 4.28's generate returns
        conv = T.get_template(name)
        answer = T.postprocess_answer(ids, tok, conv)
        stripped = T.strip_generation_prefix(ids)
        assert stripped == (ids[1:] if ids[0] == 1 else ids)
        text = tok.decode(stripped)
        cut = text.split(conv.sep)[0] if conv.sep_style is T.SepStyle.SINGLE else text.split(conv.sep2)[0]
        assert answer == cut.split(conv.roles[1] + ":")[-1].strip()


# ------------------------------------------------------------------------------------------------ training
def _train(official_set) -> dict:
    train = official_set.manifest.get("train") or {}
    if not train:
        pytest.skip(f"{official_set.name}: no train section")
    return train


def _caption_entries(official_set) -> dict:
    return {k: v for k, v in _train(official_set).items() if k.startswith("caption") and "text_input" in v}


def test_caption_text_ids(official_set):
    entries = _caption_entries(official_set)
    if not entries:
        pytest.skip("no caption entries")
    entry = entries.get("caption_vl") or next(iter(entries.values()))
    tok = official_set.tokenizer
    ids, mask = I.tokenize_captions(entry["text_input"], tok, entry["end_sym"], entry["max_txt_len"])
    want_ids = official_set.tensor("train.caption.text_ids")
    want_mask = official_set.tensor("train.caption.text_attention_mask")
    assert ids.shape == want_ids.shape
    assert torch.equal(ids, want_ids.long())
    assert torch.equal(mask, want_mask.long())


@pytest.mark.parametrize("entry_name", ["caption_vl", "caption_al_image"])
def test_caption_labels(official_set, entry_name):
    entries = _caption_entries(official_set)
    if entry_name not in entries:
        pytest.skip(f"no {entry_name}")
    entry = entries[entry_name]
    tok = official_set.tokenizer
    ids, mask = I.tokenize_captions(entry["text_input"], tok, entry["end_sym"], entry["max_txt_len"])
    n = official_set.num_media_tokens(int(entry["train_flag"]))
    prefix = n
    if entry.get("prompt"):
        before, after = I.prompt_wrap_ids(entry["prompt"], tok)
        prefix = len(before) + n + len(after)
    want_labels = official_set.tensor(f"train.{entry_name}.labels").long()
    want_mask = official_set.tensor(f"train.{entry_name}.attention_mask").long()
    # N from the manifest agrees with the tensor widths
    assert want_labels.shape[1] == 1 + prefix + ids.shape[1]
    labels, att = I.caption_labels(ids, mask, prefix, tok.pad_token_id)
    assert torch.equal(labels, want_labels)
    assert torch.equal(att, want_mask)


def _instruct_entries(official_set) -> dict:
    return {k: v for k, v in _train(official_set).items() if k.startswith("instruct_")}


def _model_type(key: str, entry: dict) -> str:
    return entry.get("model_type") or key[len("instruct_"):]


def _msgs(entry: dict, b: int) -> list[str]:
    msg = entry.get("msg", "")
    return list(msg) if isinstance(msg, list) else [msg] * b


def test_instruct_samples(official_set):
    entries = _instruct_entries(official_set)
    if not entries:
        pytest.skip("no instruct entries")
    tok = official_set.tokenizer
    for key, entry in entries.items():
        n = official_set.num_media_tokens(int(entry.get("train_flag", 0)))
        qas = entry["qa"]
        msgs = _msgs(entry, len(qas))
        samples = []
        for b, qa in enumerate(qas):
            turns = I.video_instruct_turns(qa, msgs[b], n, data_type=entry.get("data_type", "video"))
            sample = I.build_instruct_sample(turns, tok, _model_type(key, entry))
            if "conversation_text" in entry:
                assert sample.text == entry["conversation_text"][b], key
            assert sample.text.count(IMAGE_PLACEHOLDER) == n
            samples.append(sample)
        batch = I.collate_instruct(samples, pad_id=tok.unk_token_id)
        for field in ("input_ids", "labels", "attention_mask"):
            want = official_set.tensor(f"train.{key}.{field}").long()
            assert batch[field].shape == want.shape, (key, field)
            assert torch.equal(batch[field], want), (key, field)
        for row in batch["input_ids"]:
            start = I.find_media_span(row, tok.image_token_id, n)
            assert start > 0
