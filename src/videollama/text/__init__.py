"""Text layer: legacy LLaMA tokenizer emulation, conversation templates, prompt splitting, training text."""

from videollama.text.instruct import (
    IGNORE_INDEX,
    InstructSample,
    blip_caption,
    build_instruct_sample,
    caption_labels,
    collate_instruct,
    llava_instruct_turns,
    tokenize_captions,
    video_instruct_turns,
)
from videollama.text.prompt import PromptSegments, build_prompt_segments, context_begin_index, split_prompt
from videollama.text.templates import (
    Conversation,
    SepStyle,
    get_template,
    hf_chat_template,
    postprocess_answer,
    stop_sequences,
)
from videollama.text.tokenizer import (
    AUDIO_PLACEHOLDER,
    IMAGE_PLACEHOLDER,
    HFTokenizer,
    LegacyLlamaTokenizer,
    TextTokenizer,
    load_tokenizer,
)

__all__ = [
    "AUDIO_PLACEHOLDER",
    "IMAGE_PLACEHOLDER",
    "IGNORE_INDEX",
    "Conversation",
    "HFTokenizer",
    "InstructSample",
    "LegacyLlamaTokenizer",
    "PromptSegments",
    "SepStyle",
    "TextTokenizer",
    "blip_caption",
    "build_instruct_sample",
    "build_prompt_segments",
    "caption_labels",
    "collate_instruct",
    "context_begin_index",
    "get_template",
    "hf_chat_template",
    "llava_instruct_turns",
    "load_tokenizer",
    "postprocess_answer",
    "split_prompt",
    "stop_sequences",
    "tokenize_captions",
    "video_instruct_turns",
]
