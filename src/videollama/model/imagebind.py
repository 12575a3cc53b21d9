"""ImageBind-Huge audio and vision encoders (the two modalities Video-LLaMA uses).

Written from the ImageBind paper (arXiv 2305.05665) and the checkpoint's tensor shapes,
not from ImageBind's code (CC BY-NC-SA); no PyPI package works without torchvision.
Each modality is: stem -> [CLS] + learned positions -> pre-norm transformer -> head
(LayerNorm, CLS token, bias-free Linear) -> L2 normalisation (x logit scale for audio).
`checkpoint/mappings.py` maps the official `modality_*` keys onto these names.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from videollama.config import AudioEncoderConfig, ImageBindModalityConfig


class TrunkBlock(nn.Module):
    """Pre-norm transformer block on `nn.MultiheadAttention` (batch first); optional learned extra key/value."""

    def __init__(self, cfg: ImageBindModalityConfig, eps: float, bias_kv: bool) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.width, eps=eps)
        self.attn = nn.MultiheadAttention(cfg.width, cfg.heads, bias=True, add_bias_kv=bias_kv, batch_first=True)
        self.norm2 = nn.LayerNorm(cfg.width, eps=eps)
        self.fc1 = nn.Linear(cfg.width, cfg.mlp_hidden)
        self.fc2 = nn.Linear(cfg.mlp_hidden, cfg.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class _Modality(nn.Module):
    """Shared tail of both modalities: tokens -> trunk -> head -> normalised embedding."""

    def __init__(self, cfg: ImageBindModalityConfig, num_tokens: int, out_dim: int, eps: float, bias_kv: bool) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens + 1, cfg.width))
        self.blocks = nn.ModuleList(TrunkBlock(cfg, eps, bias_kv) for _ in range(cfg.depth))
        self.head_norm = nn.LayerNorm(cfg.width, eps=eps)
        self.head_proj = nn.Linear(cfg.width, out_dim, bias=False)

    def add_cls_and_positions(self, patches: torch.Tensor) -> torch.Tensor:
        cls = self.cls_token.expand(patches.shape[0], -1, -1).to(patches.dtype)
        return torch.cat([cls, patches], dim=1) + self.pos_embed.to(patches.dtype)

    def trunk(self, tokens: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            tokens = block(tokens)
        return tokens

    def head(self, trunk_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (feature before projection (N, width), projected embedding (N, out_dim), not normalised)."""
        feature = self.head_norm(trunk_out)[:, 0]
        return feature, self.head_proj(feature)


class ImageBindAudio(_Modality):
    """Log-mel clips (N, 1, mel, frames) -> (N, out_dim) embeddings of norm exp(log_logit_scale) (= 20)."""

    def __init__(self, cfg: AudioEncoderConfig) -> None:
        f, t = cfg.audio_grid
        super().__init__(cfg.audio, f * t, cfg.out_dim, cfg.norm_eps, bias_kv=True)
        self.stem = nn.Conv2d(1, cfg.audio.width, kernel_size=cfg.kernel_size, stride=cfg.stride, bias=False)
        self.stem_norm = nn.LayerNorm(cfg.audio.width, eps=cfg.stem_norm_eps)
        self.register_buffer("log_logit_scale", torch.tensor(math.log(20.0)))

    def tokens(self, mel: torch.Tensor) -> torch.Tensor:
        return self.add_cls_and_positions(self.stem_norm(self.stem(mel).flatten(2).transpose(1, 2)))

    def forward(self, mel: torch.Tensor, return_intermediates: bool = False):
        tokens = self.tokens(mel)
        trunk_out = self.trunk(tokens)
        feature, embed = self.head(trunk_out)
        scale = self.log_logit_scale.exp().clamp(max=100)
        embed = F.normalize(embed, dim=-1) * scale
        if return_intermediates:
            return {"tokens": tokens, "trunk_out": trunk_out, "feature": feature, "embed": embed}
        return embed


class ImageBindVision(_Modality):
    """Images (N, 3, S, S) -> (N, out_dim) unit-norm embeddings (used only by the official AL training path)."""

    def __init__(self, cfg: AudioEncoderConfig) -> None:
        assert cfg.vision is not None
        grid = cfg.image_size // cfg.patch_size
        super().__init__(cfg.vision, grid * grid, cfg.out_dim, cfg.norm_eps, bias_kv=False)
        self.tubelet = cfg.tubelet
        kernel = (cfg.tubelet, cfg.patch_size, cfg.patch_size)
        self.stem = nn.Conv3d(3, cfg.vision.width, kernel_size=kernel, stride=kernel, bias=False)
        self.pre_norm = nn.LayerNorm(cfg.vision.width, eps=cfg.norm_eps)

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        # An image is a still video: repeat it along a new time axis to fill one tubelet.
        clip = images.unsqueeze(2).expand(-1, -1, self.tubelet, -1, -1)
        return self.add_cls_and_positions(self.stem(clip).flatten(2).transpose(1, 2))

    def forward(self, images: torch.Tensor, return_intermediates: bool = False):
        tokens = self.tokens(images)
        trunk_out = self.trunk(self.pre_norm(tokens))
        feature, embed = self.head(trunk_out)
        embed = F.normalize(embed, dim=-1)
        if return_intermediates:
            return {"tokens": tokens, "trunk_out": trunk_out, "feature": feature, "embed": embed}
        return embed
