"""Build a VideoLLaMAConfig from an official fixture set's manifest (every size read from the manifest)."""

from __future__ import annotations

from typing import Any

from videollama.config import (
    AudioEncoderConfig, ImageBindModalityConfig, QFormerConfig, VideoLLaMAConfig, VisionEncoderConfig,
)

IMAGEBIND_MLP_RATIO = 4  # ImageBind's trunks all use an MLP 4x their width (not recorded in the manifest)


def config_from_manifest(manifest: dict[str, Any]) -> VideoLLaMAConfig:
    d = manifest["dims"]
    eva, qf, ib = d["eva_vit"], d["qformer"], d["imagebind"]

    def qformer(layers: int, freq: int, width: int, queries: int) -> QFormerConfig:
        return QFormerConfig(hidden=qf["hidden"], heads=qf["heads"], intermediate=qf["intermediate"], layers=layers,
                             cross_attention_freq=freq, encoder_width=width, num_query_tokens=queries,
                             layer_norm_eps=qf["layer_norm_eps"], max_position_embeddings=qf["max_position_embeddings"])

    def modality(m: dict[str, int]) -> ImageBindModalityConfig:
        return ImageBindModalityConfig(width=m["dim"], depth=m["blocks"], heads=m["heads"],
                                       mlp_hidden=IMAGEBIND_MLP_RATIO * m["dim"])

    audio_in = ib["audio_input"]
    return VideoLLaMAConfig(
        vision=VisionEncoderConfig(image_size=d["image_size"], patch_size=d["patch_size"], width=eva["width"],
                                   depth=eva["depth_used"], heads=eva["heads"], mlp_hidden=eva["mlp_hidden"],
                                   norm_eps=eva["norm_eps"], ln_vision_eps=d["ln_vision_eps"]),
        image_qformer=qformer(qf["image_qformer_layers"], qf["image_cross_attention_freq"], eva["width"],
                              d["num_image_query"]),
        video_qformer=qformer(qf["video_qformer_layers"], qf["video_audio_cross_attention_freq"], qf["hidden"],
                              d["num_video_query"]),
        audio_encoder=AudioEncoderConfig(
            audio=modality(ib["audio"]), vision=modality(ib["vision"]), out_dim=ib["out_embed_dim"],
            num_mel_bins=audio_in[1], target_length=audio_in[2], kernel_size=ib["audio_kernel"],
            stride=ib["audio_stride"], image_size=ib["vision_img_size"][-1], patch_size=ib["vision_kernel"][-1],
            tubelet=ib["vision_kernel"][0]),
        audio_qformer=qformer(qf["audio_qformer_layers"], qf["video_audio_cross_attention_freq"], ib["out_embed_dim"],
                              d["num_audio_query"]),
        max_frame_pos=d["max_frame_pos"],
        num_audio_positions=d["audio_position_embedding_rows"],
    )
