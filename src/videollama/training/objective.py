"""What training optimises, independent of the engine: which parameters train, and the loss of a batch.

Official freezing (SPEC §1.2, §1.10): everything is frozen except, for the vision-language branch
("vl", train_flag 0), the video Q-Former with its queries, the frame position embedding and `video_proj`;
for the audio-language branch ("al", train_flag 1), the audio Q-Former with its queries, the audio
position embedding and `audio_proj`. The AL branch trains on ImageBind *vision* embeddings of frames.
Our extension "av" trains both branches at once, on real audio (ImageBind *audio* embeddings) plus frames;
its media go into the prompt in the official audio+video order: audio tokens, then video tokens.

A collated batch is a dict:
  task:   "caption" (WebVid / image captions) or "instruct" (conversations with `<ImageHere>` runs)
  media:  "pixel_values" (B, 3, T, H, W), or precomputed frozen features from the feature cache:
          "frame_features" (B, T, Q, Hq) for "vl", "imagebind_embeds" (B, T, O) for "al";
          real audio for "al"/"av": "audio_values" (B, S, 1, 128, 204) or cached "audio_embeds" (B, S, O)
  caption: "text_ids", "text_mask" (B, L), optional "prompt_ids" (ids before, ids after `<ImageHere>`)
  instruct: "input_ids", "labels", "attention_mask" (B, L)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

Branch = Literal["vl", "al", "av"]

TRAINABLE_MODULES: dict[str, tuple[str, ...]] = {
    "vl": ("video_qformer", "frame_position_embedding", "video_proj"),
    "al": ("audio_qformer", "audio_position_embedding", "audio_proj"),
}
TRAINABLE_MODULES["av"] = TRAINABLE_MODULES["al"] + TRAINABLE_MODULES["vl"]


@dataclass(frozen=True)
class TokenIds:
    """The token ids the loss needs (from the tokenizer)."""

    bos: int
    pad: int
    media: int  # `<ImageHere>`

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> TokenIds:
        """bos, pad = unk (official; the pad id where there is no unk) and `<ImageHere>`."""
        pad = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else tokenizer.pad_token_id
        if pad is None:
            raise ValueError("the tokenizer has neither an unk nor a pad id")
        return cls(bos=int(tokenizer.bos_token_id), pad=int(pad), media=int(tokenizer.image_token_id))


def set_trainable(model: nn.Module, branch: Branch) -> int:
    """Freeze everything but the branch's modules (official freezing); returns the trainable parameter count."""
    if branch not in TRAINABLE_MODULES:
        raise ValueError(f"branch must be one of {sorted(TRAINABLE_MODULES)}, got {branch!r}")
    for param in model.parameters():
        param.requires_grad_(False)
    count = 0
    for name in TRAINABLE_MODULES[branch]:
        module = getattr(model, name, None)
        if module is None:
            raise ValueError(f"branch {branch!r} needs module '{name}', which this model does not have")
        for param in module.parameters():
            param.requires_grad_(True)
            count += param.numel()
    return count


def set_train_mode(model: nn.Module, branch: Branch) -> None:
    """Frozen modules stay in eval mode (official quirk 44); only the trained modules use dropout."""
    model.eval()
    for name in TRAINABLE_MODULES[branch]:
        getattr(model, name).train()


def _video_tokens(model, batch: dict[str, Any]) -> torch.Tensor:
    feats = batch.get("frame_features")
    if feats is None:
        with torch.no_grad():
            feats = model.frame_features(batch["pixel_values"])
    return model.video_from_frame_features(feats).llm_embeds


def _audio_tokens(model, batch: dict[str, Any]) -> torch.Tensor:
    embeds = batch.get("audio_embeds")
    if embeds is None and batch.get("audio_values") is not None:
        with torch.no_grad():
            embeds = model.audio_clip_embeddings(batch["audio_values"])
    if embeds is None:  # official AL training: ImageBind *vision* embeddings of the frames
        embeds = batch.get("imagebind_embeds")
        if embeds is None:
            with torch.no_grad():
                embeds = model.imagebind_frame_embeddings(batch["pixel_values"].permute(0, 2, 1, 3, 4))
    return model.audio_from_embeddings(embeds).llm_embeds


def media_sequences(model, batch: dict[str, Any], branch: Branch) -> list[torch.Tensor]:
    """The (B, N, D) media token sequences of a batch, in prompt order; frozen encoders run without gradients."""
    if branch == "vl":
        return [_video_tokens(model, batch)]
    if branch == "al":
        return [_audio_tokens(model, batch)]
    return [_audio_tokens(model, batch), _video_tokens(model, batch)]


def media_embeddings(model, batch: dict[str, Any], branch: Branch) -> torch.Tensor:
    """All media tokens of a batch concatenated in prompt order (B, N, D)."""
    return torch.cat(media_sequences(model, batch, branch), dim=1)


def batch_loss(model, batch: dict[str, Any], branch: Branch, ids: TokenIds) -> torch.Tensor:
    """The official training loss of one collated batch (caption path or instruction path)."""
    sequences = media_sequences(model, batch, branch)
    media = torch.cat(sequences, dim=1)
    if batch["task"] == "caption":
        embeds, mask, labels = model.caption_inputs(media, batch["text_ids"], batch["text_mask"], bos_id=ids.bos,
                                                    pad_id=ids.pad, prompt_ids=batch.get("prompt_ids"))
        return model.lm_loss(embeds, mask, labels)
    if batch["task"] == "instruct":
        embeds = model.instruct_inputs(sequences, batch["input_ids"], media_token_id=ids.media)
        return model.lm_loss(embeds, batch["attention_mask"], batch["labels"])
    raise ValueError(f"unknown batch task {batch['task']!r}")
