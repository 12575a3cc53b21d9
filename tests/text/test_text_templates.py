"""Templates (SPEC §4): byte-exact worked prompts, ask(), multi-turn, stop ids, post-processing."""

from __future__ import annotations

import pytest

from videollama.errors import ConfigError
from videollama.text import templates as T
from videollama.text.prompt import build_prompt_segments, context_begin_index, split_prompt

TS = "The video contains 8 frames sampled at 0.0, 1.2, 2.5, 3.7, 5.0, 6.2, 7.5, 8.7 seconds. "
Q = "What is the dog doing?"


def _video_conv(name: str, system: str | None = None) -> T.Conversation:
    conv = T.get_template(name)
    if system is not None:
        conv.system = system
    assert conv.upload_video(TS) == ["video"]
    conv.ask(Q)
    conv.start_answer()
    return conv


def test_vicuna_video_only():
    assert _video_conv("vicuna").get_prompt() == (
        "###Human: <Video><ImageHere></Video> The video contains 8 frames sampled at 0.0, 1.2, 2.5, 3.7, 5.0, "
        "6.2, 7.5, 8.7 seconds.  What is the dog doing?###Assistant:"
    )


def test_llama2_video_only_demo_audiovideo():
    assert _video_conv("llama_2", system="").get_prompt() == (
        "[INST] <<SYS>>\n\n<</SYS>>\n\n<Video><ImageHere></Video> The video contains 8 frames sampled at 0.0, "
        "1.2, 2.5, 3.7, 5.0, 6.2, 7.5, 8.7 seconds.  What is the dog doing? [/INST]"
    )


def test_llama2_image():
    conv = T.get_template("llama_2")
    assert conv.upload_image(system=T.IMAGE_SYSTEM_PROMPT) == ["image"]
    conv.ask("Which breed is this dog?")
    conv.start_answer()
    assert conv.get_prompt() == (
        "[INST] <<SYS>>\nYou are able to understand the visual content that the user provides. Follow the "
        "instructions carefully and explain your answers in detail.\n<</SYS>>\n\n<Image><ImageHere></Image>  "
        "Which breed is this dog? [/INST]"
    )


def test_llama2_default_system():
    conv = T.get_template("llama_v2")
    conv.ask("hi")
    conv.start_answer()
    assert conv.get_prompt() == f"[INST] <<SYS>>\n{T.LLAVA_LLAMA2_SYSTEM_PROMPT}\n<</SYS>>\n\nhi [/INST]"


def test_audio_video_turn_bytes():
    msg = T.video_audio_first_turn()
    assert msg.count("<ImageHere>") == 2
    assert ".                 Close" in msg and "." + " " * 17 + "Close" in msg
    assert "." + " " * 18 + "Now answer" in msg
    assert " " * 19 not in msg
    conv = T.get_template("vicuna")
    conv.system = "something"
    assert conv.upload_video(TS, with_audio=True) == ["audio", "video"]
    assert conv.system == ""  # forced
    conv.ask(Q)
    conv.start_answer()
    p = conv.get_prompt()
    assert p == "###Human: " + msg + " " + Q + "###Assistant:"
    assert "The video contains" not in p  # no timestamp message with audio
    segs = split_prompt(p)
    assert segs[0].endswith("sound that: ") and segs[1].endswith("<Video>") and segs[2].startswith("</Video>.")


def test_ask_double_space_and_new_turns():
    conv = T.get_template("vicuna")
    conv.upload_image()
    conv.ask("Q1")
    assert conv.messages[-1][1] == "<Image><ImageHere></Image>  Q1"
    # the last user message still holds </Image>: a second ask is joined to it as well (official)
    conv.ask("Q2")
    assert conv.messages == [["Human", "<Image><ImageHere></Image>  Q1 Q2"]]
    # after an answer, a question is a new user message
    conv.set_answer("A")
    conv.ask("Q3")
    assert conv.messages[-1] == ["Human", "Q3"] and len(conv.messages) == 3
    # plain question without media
    conv2 = T.get_template("vicuna")
    conv2.ask("hello")
    assert conv2.messages == [["Human", "hello"]]


def test_multi_turn_vicuna():
    conv = _video_conv("vicuna")
    first = conv.get_prompt()
    conv.set_answer("It is running.")
    conv.ask("Why?")
    conv.start_answer()
    assert conv.get_prompt() == first + " It is running.###Human: Why?###Assistant:"


def test_multi_turn_llama2():
    conv = _video_conv("llama_2", system="")
    first = conv.get_prompt()
    conv.set_answer("It is running.")
    conv.ask("Why?")
    conv.start_answer()
    assert conv.get_prompt() == first + " It is running. </s><s>[INST] Why? [/INST]"


def test_llama2_charset_strip_and_errors():
    conv = T.get_template("llama_2")
    conv.append_message("USER", "x")
    assert not conv.get_prompt().startswith("<") and conv.get_prompt().startswith("[INST]")
    bad = T.get_template("llama_2")
    bad.append_message("ASSISTANT", "x")
    with pytest.raises(ValueError):
        bad.get_prompt()
    with pytest.raises(ConfigError):
        T.get_template("nope")


def test_copy_is_independent():
    a = T.get_template("vicuna")
    a.ask("x")
    assert T.get_template("vicuna").messages == []
    b = a.copy()
    b.ask("y")
    assert len(a.messages) == 1


def test_stop_ids_official():
    assert T.stop_sequences(T.get_template("vicuna")) == [[835], [2277, 29937]]
    assert T.stop_sequences(T.get_template("llama_2")) == [[2]]


def test_strip_generation_prefix():
    assert T.strip_generation_prefix([0, 1, 5]) == [5]
    assert T.strip_generation_prefix([1, 5]) == [5]
    assert T.strip_generation_prefix([1, 0, 5]) == [0, 5]  # 0 is only dropped first
    assert T.strip_generation_prefix([5, 6]) == [5, 6]  # newer transformers: nothing to strip
    assert T.strip_generation_prefix([]) == []


def test_postprocess_vicuna(any_tokenizer):
    tok = any_tokenizer
    conv = T.get_template("vicuna")
    ids = [1] + tok.encode("The man is running.###Human: more", add_bos=False)
    assert T.postprocess_answer(ids, tok, conv) == "The man is running."
    ids = [0, 1] + tok.encode("Assistant: A dog.\n###", add_bos=False)
    assert T.postprocess_answer(ids, tok, conv) == "A dog."
    # quirk 40: an EOS-terminated vicuna answer keeps its "</s>" (only "###" is cut). 4.28's decode puts
    # the space in front of the text chunk that precedes the special token, so after strip() it is "Hi</s>"
    ids = tok.encode("Hi", add_bos=False) + [tok.eos_token_id]
    assert T.postprocess_answer(ids, tok, conv) == "Hi</s>"


def test_postprocess_llama2(any_tokenizer):
    tok = any_tokenizer
    conv = T.get_template("llama_2")
    ids = [1] + tok.encode("ASSISTANT: It is red.", add_bos=False) + [tok.eos_token_id] + tok.encode("x", add_bos=False)
    assert T.postprocess_answer(ids, tok, conv) == "It is red."
    ids = [1] + tok.encode("Plain answer ", add_bos=False) + [tok.eos_token_id]
    assert T.postprocess_answer(ids, tok, conv) == "Plain answer"


def test_decode_space_before_special(any_tokenizer):
    tok = any_tokenizer
    ids = [tok.bos_token_id] + tok.encode("hi", add_bos=False) + [tok.eos_token_id]
    # 4.28: " " + decoded chunk + special token, for a special token that follows non-special pieces
    assert tok.decode(ids) == "<s> hi</s>"
    assert tok.decode(tok.encode("hi", add_bos=False) + [tok.eos_token_id] * 2) == " hi</s></s>"
    assert tok.decode([tok.image_token_id, tok.audio_token_id]) == "<ImageHere> <AudioHere>"


def test_segments_bos_only_first(any_tokenizer):
    tok = any_tokenizer
    conv = _video_conv("vicuna")
    seg = build_prompt_segments(conv, tok, num_media=1)
    assert seg.num_media == 1
    assert seg.ids[0][0] == tok.bos_token_id and seg.ids[1][0] != tok.bos_token_id
    assert seg.ids[0] == tok.encode(seg.texts[0], add_bos=True)
    assert seg.ids[1] == tok.encode(seg.texts[1], add_bos=False)
    with pytest.raises(ValueError):
        build_prompt_segments(conv, tok, num_media=2)


def test_context_truncation():
    assert context_begin_index(100, 300, 2000, warn=False) == 0
    with pytest.warns(UserWarning):
        assert context_begin_index(1800, 300, 2000) == 100


def test_legacy_vs_dummy_prefix(any_tokenizer):
    """Legacy quirks the official ids depend on (SPEC §1.9)."""
    tok = any_tokenizer
    # each piece between special tokens gets its own dummy prefix
    assert tok.encode("a</s>b", add_bos=False) == (
        tok.encode("a", add_bos=False) + [tok.eos_token_id] + tok.encode("b", add_bos=False)
    )
    # literal <s> / </s> become BOS / EOS, no EOS is appended
    assert tok.encode("<s>", add_bos=True) == [tok.bos_token_id, tok.bos_token_id]
    assert tok.encode("x", add_bos=True)[-1] != tok.eos_token_id
    # whitespace on both sides of <ImageHere> is stripped; not around <s>
    assert tok.encode("a  <ImageHere>\n b", add_bos=False) == tok.encode("a<ImageHere>b", add_bos=False)
    assert tok.encode("a <s> b", add_bos=False) != tok.encode("a<s>b", add_bos=False)
