"""The Python API on a tiny random model: prompts, caching, streaming, multi-turn, batching, seeding."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from videollama.errors import MediaNotFoundError
from videollama.text.templates import IMAGE_SYSTEM_PROMPT, VIDEO_AUDIO_FIRST_TURN


def test_video_with_audio_uses_official_prompt_and_order(pipe, example_video) -> None:
    chat = pipe.chat(example_video)
    assert chat.media.order == ["audio", "video"] and chat.media.notice is None
    chat.ask("What happens?", greedy=True, max_new_tokens=3)
    prompt = chat.conv.get_prompt()
    assert VIDEO_AUDIO_FIRST_TURN + " What happens?" in prompt
    assert prompt.startswith("[INST] <<SYS>>\n\n<</SYS>>\n\n")  # audio forces the empty system prompt


def test_video_without_audio_uses_timestamp_message(pipe, example_video) -> None:
    chat = pipe.chat(example_video, use_audio=False)
    chat.ask("Q?", greedy=True, max_new_tokens=2)
    assert "<Video><ImageHere></Video> The video contains 8 frames sampled at " in chat.conv.get_prompt()
    assert "seconds.  Q? [/INST]" in chat.conv.get_prompt()  # the official double space


def test_image_prompt_and_system(pipe, tmp_path) -> None:
    path = tmp_path / "red.png"
    Image.fromarray(np.full((60, 80, 3), (200, 10, 10), np.uint8)).save(path)
    chat = pipe.chat(path)
    chat.ask("Which colour?", greedy=True, max_new_tokens=2)
    assert chat.media.kind == "image" and IMAGE_SYSTEM_PROMPT in chat.conv.get_prompt()
    assert "<Image><ImageHere></Image>  Which colour? [/INST]" in chat.conv.get_prompt()


def test_cache_skips_encoders(pipe, example_video) -> None:
    first = pipe.prepare(example_video)
    hits = pipe.cache_hits
    assert pipe.prepare(example_video) is first and pipe.cache_hits == hits + 1
    assert pipe.prepare(example_video, use_audio=False) is not first


def test_greedy_is_deterministic_and_stream_matches_ask(pipe, example_video) -> None:
    a = pipe.ask(example_video, "Describe.", greedy=True, max_new_tokens=8)
    b = pipe.ask(example_video, "Describe.", greedy=True, max_new_tokens=8)
    streamed = "".join(pipe.stream(example_video, "Describe.", greedy=True, max_new_tokens=8))
    assert a == b == streamed


def test_seeded_sampling_reproduces(pipe, example_video) -> None:
    a = pipe.ask(example_video, "Q", seed=7, max_new_tokens=8)
    b = pipe.ask(example_video, "Q", seed=7, max_new_tokens=8)
    assert a == b


def test_multi_turn_keeps_history(pipe, example_video) -> None:
    chat = pipe.chat(example_video)
    first = chat.ask("One?", greedy=True, max_new_tokens=3)
    chat.ask("Two?", greedy=True, max_new_tokens=3)
    prompt = chat.conv.get_prompt()
    assert f"One? [/INST] {first} </s><s>[INST] Two? [/INST]" in prompt
    assert [q for q, _ in chat.history] == [chat.conv.messages[0][1], "Two?"]


def test_batch_equals_sequential(pipe, example_video) -> None:
    requests = [(example_video, "short"), (example_video, "a much longer question about the video"), (None, "hi")]
    batched = pipe.ask_batch(requests, greedy=True, max_new_tokens=6, batch_size=3)
    sequential = [pipe.ask(m, q, greedy=True, max_new_tokens=6) for m, q in requests]
    assert batched == sequential


def test_missing_media(pipe, tmp_path) -> None:
    with pytest.raises(MediaNotFoundError, match="missing.mp4: file not found"):
        pipe.ask(tmp_path / "missing.mp4", "Q")


def test_unknown_setting(pipe, example_video) -> None:
    with pytest.raises(TypeError, match="unknown generation setting"):
        pipe.ask(example_video, "Q", temprature=0.5)


def test_prefix_cache_reuse_keeps_answers_identical(pipe, example_video) -> None:
    """The second question about a file reuses the LLM cache of the media prefix; answers must not change."""
    pipe._prefix_caches.clear()
    first = pipe.ask(example_video, "What colour is the square?", greedy=True, max_new_tokens=8)
    assert len(pipe._prefix_caches) == 1
    second = pipe.ask(example_video, "What colour is the square?", greedy=True, max_new_tokens=8)
    assert second == first and len(pipe._prefix_caches) == 1
    pipe._prefix_caches.clear()
    chat = pipe.chat(example_video)
    other = chat.ask("What colour is the square?", greedy=True, max_new_tokens=8, max_length=10_000)
    assert other == first


def test_abandoned_stream_stops_generation(pipe, example_video) -> None:
    import time

    # min_length keeps the model from stopping on its own: uninterrupted, this takes well over 10 s.
    stream = pipe.stream(example_video, "Describe.", max_new_tokens=3000, min_length=3000, max_length=10_000, seed=1)
    next(stream)
    stream.close()  # the reader goes away
    t0 = time.perf_counter()
    with pipe._lock:  # the lock is released once generation has stopped
        waited = time.perf_counter() - t0
    assert waited < 3
