"""Key-mapping tables between the official Video-LLaMA files and our parameter names.

Pure data. Each source file ("slot") has a table of `(official, ours)` key templates. `{l}` matches
a layer/block number, `{p}` the rest of a dotted name. `ours = None` means: intentionally ignored
(text-side Q-Former parts, unused ImageBind modalities, buffers the official runner saves). A key
that matches no row is an error. The tables run in reverse to export our weights to the official layout.
"""

from __future__ import annotations

from dataclasses import dataclass

Row = tuple[str, "str | None"]


def _qformer_rows(official: str, ours: str) -> list[Row]:
    """A LAVIS BERT Q-Former (`{official}.bert...`) onto transformers' Blip2QFormerModel (`{ours}.model...`)."""
    layer = f"{official}.bert.encoder.layer.{{l}}"
    target = f"{ours}.model.encoder.layer.{{l}}"
    return [
        (f"{official}.bert.embeddings.LayerNorm.{{p}}", f"{ours}.model.layernorm.{{p}}"),
        (f"{layer}.attention.self.{{p}}", f"{target}.attention.attention.{{p}}"),
        (f"{layer}.attention.output.{{p}}", f"{target}.attention.output.{{p}}"),
        (f"{layer}.crossattention.self.{{p}}", f"{target}.crossattention.attention.{{p}}"),
        (f"{layer}.crossattention.output.{{p}}", f"{target}.crossattention.output.{{p}}"),
        (f"{layer}.intermediate_query.{{p}}", f"{target}.intermediate_query.{{p}}"),
        (f"{layer}.output_query.{{p}}", f"{target}.output_query.{{p}}"),
        # Text-side parts Video-LLaMA deletes before loading (queries-only Q-Former).
        (f"{official}.bert.embeddings.position_ids", None),
        (f"{official}.bert.embeddings.word_embeddings.{{p}}", None),
        (f"{official}.bert.embeddings.position_embeddings.{{p}}", None),
        (f"{layer}.intermediate.{{p}}", None),
        (f"{layer}.output.{{p}}", None),
        (f"{official}.cls.{{p}}", None),
    ]


def _imagebind_trunk_rows(modality: str, ours: str) -> list[Row]:
    block = f"modality_trunks.{modality}.blocks.{{l}}"
    return [
        (f"{block}.attn.{{p}}", f"{ours}.blocks.{{l}}.attn.{{p}}"),
        (f"{block}.norm_1.{{p}}", f"{ours}.blocks.{{l}}.norm1.{{p}}"),
        (f"{block}.norm_2.{{p}}", f"{ours}.blocks.{{l}}.norm2.{{p}}"),
        (f"{block}.mlp.fc1.{{p}}", f"{ours}.blocks.{{l}}.fc1.{{p}}"),
        (f"{block}.mlp.fc2.{{p}}", f"{ours}.blocks.{{l}}.fc2.{{p}}"),
        (f"modality_preprocessors.{modality}.cls_token", f"{ours}.cls_token"),
        (f"modality_preprocessors.{modality}.pos_embedding_helper.pos_embed", f"{ours}.pos_embed"),
        (f"modality_heads.{modality}.0.{{p}}", f"{ours}.head_norm.{{p}}"),
        (f"modality_heads.{modality}.2.weight", f"{ours}.head_proj.weight"),
    ]


# Buffers that the official training runner writes into every VL/AL checkpoint: equal to constructor values.
_RUNNER_BUFFERS: list[Row] = [
    ("Qformer.bert.embeddings.position_ids", None),
    ("llama_model.model.layers.{l}.self_attn.rotary_emb.inv_freq", None),
    ("audio_encoder.modality_preprocessors.text.mask", None),
    ("audio_encoder.modality_postprocessors.{p}.log_logit_scale", None),
]

EVA_VIT: list[Row] = [
    # EVA-CLIP parts after the penultimate layer, which BLIP-2 does not use (the loader also drops
    # `blocks.{l}` past the configured depth: the file has 40 blocks, the model keeps 39).
    ("norm.{p}", None),
    ("fc_norm.{p}", None),
    ("head.{p}", None),
    ("{p}", "vision.encoder.{p}"),  # official names kept verbatim
]

BLIP2: list[Row] = [
    ("ln_vision.{p}", "vision.ln_vision.{p}"),
    ("query_tokens", "image_qformer.query_tokens"),
    *_qformer_rows("Qformer", "image_qformer"),
    ("t5_proj.{p}", None),  # BLIP-2's T5 projection, unused by Video-LLaMA
]

IMAGEBIND: list[Row] = [
    ("modality_preprocessors.audio.rgbt_stem.proj.weight", "audio_encoder.stem.weight"),
    ("modality_preprocessors.audio.rgbt_stem.norm_layer.{p}", "audio_encoder.stem_norm.{p}"),
    ("modality_postprocessors.audio.1.log_logit_scale", "audio_encoder.log_logit_scale"),
    *_imagebind_trunk_rows("audio", "audio_encoder"),
    ("modality_preprocessors.vision.rgbt_stem.proj.1.weight", "imagebind_vision.stem.weight"),
    ("modality_trunks.vision.pre_transformer_layer.0.{p}", "imagebind_vision.pre_norm.{p}"),
    *_imagebind_trunk_rows("vision", "imagebind_vision"),
    # The other four modalities are not used by Video-LLaMA (quirk 12: load only what is needed).
    *[(f"modality_{part}.{m}.{{p}}", None) for part in ("preprocessors", "trunks", "heads", "postprocessors")
      for m in ("text", "depth", "thermal", "imu")],
]

VL_CHECKPOINT: list[Row] = [
    ("video_query_tokens", "video_qformer.query_tokens"),
    ("video_frame_position_embedding.weight", "frame_position_embedding.weight"),
    ("llama_proj.{p}", "video_proj.{p}"),
    *_qformer_rows("video_Qformer", "video_qformer"),
    *_RUNNER_BUFFERS,
    ("audio_Qformer.bert.embeddings.position_ids", None),
]

AL_CHECKPOINT: list[Row] = [
    ("audio_query_tokens", "audio_qformer.query_tokens"),
    ("audio_position_embedding.weight", "audio_position_embedding.weight"),
    ("audio_llama_proj.{p}", "audio_proj.{p}"),
    *_qformer_rows("audio_Qformer", "audio_qformer"),
    *_RUNNER_BUFFERS,
    ("video_Qformer.bert.embeddings.position_ids", None),
]


@dataclass(frozen=True)
class Slot:
    """One official source file: its CLI flag, container format, mapping table and what it must provide."""

    name: str
    flag: str
    container: str  # "raw": the file is a state dict; "model": {"model": state_dict, ...}
    rows: list[Row]
    provides: tuple[str, ...]  # our top-level module prefixes this file must fill completely
    description: str


SLOTS: dict[str, Slot] = {
    "eva": Slot("eva", "--eva", "raw", EVA_VIT, ("vision.encoder.",), "EVA ViT-g weights (eva_vit_g.pth)"),
    "blip2": Slot("blip2", "--blip2", "model", BLIP2, ("vision.ln_vision.", "image_qformer."),
                  "BLIP-2 Q-Former (blip2_pretrained_flant5xxl.pth)"),
    "imagebind": Slot("imagebind", "--imagebind", "raw", IMAGEBIND, ("audio_encoder.", "imagebind_vision."),
                      "ImageBind-Huge (imagebind_huge.pth)"),
    "vl": Slot("vl", "--vl", "model", VL_CHECKPOINT, ("video_qformer.", "frame_position_embedding.", "video_proj."),
               "vision-language branch checkpoint (VL_*.pth)"),
    "al": Slot("al", "--al", "model", AL_CHECKPOINT, ("audio_qformer.", "audio_position_embedding.", "audio_proj."),
               "audio-language branch checkpoint (AL_*.pth)"),
}
