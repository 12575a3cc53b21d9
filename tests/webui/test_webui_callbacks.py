"""The web demo's callbacks, called directly (no browser, no server): upload, ask (streaming), notices, errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from videollama.serving.webui import NO_MEDIA, DemoState, WebDemo, _parse_seed


def _last(gen):
    """Run a streaming callback to the end; return (all yields, the last one)."""
    steps = list(gen)
    return steps, steps[-1]


def _ask(web, state, question, history=None, **kw):
    kw.setdefault("seed", "0")
    return _last(web.on_ask(state, question, history or [], kw.pop("use_audio", True), kw.pop("num_beams", 1),
                            kw.pop("temperature", 1.0), kw.pop("top_p", 0.9), kw.pop("max_new_tokens", 12),
                            kw.pop("seed"), kw.pop("greedy", False)))


def test_upload_then_two_questions_encodes_once(pipe, example_video) -> None:
    web = WebDemo(pipe)
    state, history, status = web.on_media(None, str(example_video), "video")
    assert state.media == str(example_video) and history == [] and "example.mp4" in status
    state, history, status = web.on_upload(state, True)
    assert state.chat is not None and state.chat.media.order == ["audio", "video"]
    assert "audio + video" in status and "Notice" not in status
    chat = state.chat

    steps, (state, history, box, status) = _ask(web, state, "What is happening?")
    assert state.chat is chat and box == ""  # same conversation: the media was not encoded again
    assert history[0] == {"role": "user", "content": "What is happening?"}
    assert history[-1]["role"] == "assistant" and history[-1]["content"].strip()
    assert history[-1]["content"] == chat.history[-1][1]
    assert steps[0][1][-1]["role"] == "user"  # the question shows before the answer streams in

    _, (state, history, _, _) = _ask(web, state, "And then?", history)
    assert [m["role"] for m in history] == ["user", "assistant"] * 2 and len(chat.history) == 2
    assert "And then?" in chat.conv.get_prompt() and "What is happening?" in chat.conv.get_prompt()


def test_first_question_without_upload_click_starts_the_chat(pipe, example_video) -> None:
    web = WebDemo(pipe)
    state, _, _ = web.on_media(None, str(example_video), "video")
    _, (state, history, _, status) = _ask(web, state, "Describe it.", use_audio=False, greedy=True)
    assert state.chat.media.order == ["video"] and "encoded: video." in status
    assert history[-1]["content"].strip()


def test_video_without_audio_track_shows_the_notice(pipe, silent_video) -> None:
    web = WebDemo(pipe)
    state, _, _ = web.on_media(None, str(silent_video), "video")
    state, _, status = web.on_upload(state, True)
    assert state.chat.media.order == ["video"]
    assert "Notice: audio branch skipped" in status  # shown, not silently dropped as in the official demo
    _, (_, history, _, status) = _ask(web, state, "What do you hear?")
    assert "audio branch skipped" in status and history[-1]["content"].strip()


def test_beam_search_greedy_and_settings(pipe, example_video) -> None:
    web = WebDemo(pipe)
    state, _, _ = web.on_media(None, str(example_video), "video")
    _, (state, history, _, _) = _ask(web, state, "Q?", num_beams=3, max_new_tokens=5, seed="")
    assert history[-1]["content"] == state.chat.history[-1][1]
    a = _ask(web, web.on_media(None, str(example_video), "video")[0], "Q?", greedy=True)[1][1][-1]["content"]
    b = _ask(web, web.on_media(None, str(example_video), "video")[0], "Q?", greedy=True)[1][1][-1]["content"]
    assert a == b
    assert _parse_seed("") is None and _parse_seed(" 7 ") == 7 and _parse_seed(3.0) == 3
    with pytest.raises(ValueError):
        _parse_seed("abc")
    steps, (_, history, box, status) = _ask(web, state, "Again?", seed="abc")
    assert "seed must be a whole number" in status and box == "Again?" and history == []


def test_image_audio_toggle_clear_and_restart(pipe, example_video, tmp_path) -> None:
    web = WebDemo(pipe)
    path = tmp_path / "red.png"
    Image.fromarray(np.full((40, 40, 3), (220, 20, 20), np.uint8)).save(path)
    state, _, _ = web.on_media(None, str(path), "image")
    _, (state, history, _, status) = _ask(web, state, "Which colour?")
    assert state.chat.media.kind == "image" and "encoded: image" in status
    # clearing another tab keeps the conversation; clearing this one forgets the file
    same, kept, _ = web.on_media(state, None, "video", history)
    assert same is state and kept == history
    cleared, chat, status = web.on_media(state, None, "image", history)
    assert cleared.media is None and chat == [] and status == NO_MEDIA
    # toggling Audio restarts a started video conversation
    state, _, _ = web.on_upload(web.on_media(None, str(example_video), "video")[0], True)
    state, chat, status = web.on_audio_toggle(state, False)
    assert state.chat is None and chat == [] and "restarted" in status
    # text-only chat (no media): the Audio checkbox changes nothing
    _, (state, history, _, status) = _ask(web, DemoState(), "Hello?")
    assert state.chat.media is None and status.startswith("Chatting without media") and len(history) == 2
    assert web.on_audio_toggle(state, False, history) == (state, history, status)
    assert web.on_restart() == (DemoState(), [], NO_MEDIA, None, None, None, "")


def test_bad_file_and_empty_question(pipe, tmp_path) -> None:
    web = WebDemo(pipe)
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video")
    state, _, _ = web.on_media(None, str(bad), "video")
    state, chat, status = web.on_upload(state, True)
    assert status.startswith("**Error:**") and state.chat is None and state.media == str(bad)
    _, (_, history, _, status) = _ask(web, state, "Hi?")
    assert status.startswith("**Error:**") and history[-1]["content"].startswith("Error:")
    assert list(web.on_ask(DemoState(), "   ", [])) == [(DemoState(), [], "", NO_MEDIA)]
    assert web.on_upload(None, True) == (DemoState(), [], NO_MEDIA)


def test_build_demo_wires_the_components(pipe) -> None:
    pytest.importorskip("gradio")
    from videollama.serving.webui import build_demo

    demo = build_demo(pipe)
    ids = {getattr(block, "elem_id", None) for block in demo.blocks.values()}
    assert {"vl-video", "vl-image", "vl-audio", "vl-use-audio", "vl-chatbot", "vl-question", "vl-send",
            "vl-restart", "vl-beams", "vl-temperature", "vl-top-p", "vl-max-new-tokens", "vl-seed",
            "vl-greedy", "vl-status"} <= ids
    assert demo.analytics_enabled is False
