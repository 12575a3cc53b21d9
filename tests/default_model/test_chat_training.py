"""Training text in the LLM's own chat template (the default model's stage 2): same prompt as inference."""

from __future__ import annotations

from videollama.text.instruct import IGNORE_INDEX, build_chat_template_sample, build_instruct_sample
from videollama.text.tokenizer import IMAGE_PLACEHOLDER, HFTokenizer
from videollama.training.data.dataset import audio_video_first_turn


def _tok(smol_llm_dir) -> HFTokenizer:
    return HFTokenizer.from_pretrained(smol_llm_dir)


def test_labels_are_the_replies_and_ids_the_whole_text(smol_llm_dir) -> None:
    tok = _tok(smol_llm_dir)
    turns = [{"from": "human", "value": "What colour?"}, {"from": "gpt", "value": "Red."},
             {"from": "human", "value": "And the shape?"}, {"from": "gpt", "value": "A blue circle"}]
    s = build_chat_template_sample(turns, tok)
    assert s.input_ids == tok.encode(s.text, add_bos=True)
    assert s.input_ids[0] == tok.bos_token_id and len(s.labels) == len(s.input_ids)
    targets = [i for i, lab in zip(s.input_ids, s.labels) if lab != IGNORE_INDEX]
    assert tok.decode(targets) == "Red.<|im_end|>\nA blue circle<|im_end|>\n"
    assert [lab for lab in s.labels if lab != IGNORE_INDEX] == targets
    assert build_instruct_sample(turns, tok, "chat_template").input_ids == s.input_ids
    short = build_chat_template_sample(turns, tok, max_length=10)
    assert short.input_ids == s.input_ids[:10] and short.labels == s.labels[:10]


def test_av_training_prompt_is_the_inference_prompt(smol_pipe) -> None:
    """The ids before the first target = the pipeline's audio+video prompt with each media run expanded."""
    tok = smol_pipe.tokenizer
    question = "Which sound do you hear?"
    turns = [{"from": "human", "value": audio_video_first_turn(8, 32) + " " + question},
             {"from": "gpt", "value": "A beep."}]
    sample = build_chat_template_sample(turns, tok, system="")
    prompt_ids = sample.input_ids[: sample.labels.index(next(x for x in sample.labels if x != IGNORE_INDEX))]

    session = smol_pipe.chat(None)
    conv = session.conv
    order = conv.upload_video("", with_audio=True)
    conv.messages[-1][1] = conv.messages[-1][1] + " " + question
    conv.start_answer()
    pieces = conv.get_prompt().split(IMAGE_PLACEHOLDER)
    assert len(pieces) == 3 and order == ["audio", "video"]
    expected = (tok.encode(pieces[0], add_bos=True) + [tok.image_token_id] * 8 + tok.encode(pieces[1], add_bos=False)
                + [tok.image_token_id] * 32 + tok.encode(pieces[2], add_bos=False))
    assert prompt_ids == expected
