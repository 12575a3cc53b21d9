"""EVA ViT-g/14 image encoder, as BLIP-2 and Video-LLaMA use it.

Written by hand because timm (which has an exact `Eva`) imports torchvision, which is
broken beside torch 2.13. Parameter names equal those of `eva_vit_g.pth`, so the official
file loads strictly once its unused last block is dropped (the official model keeps 39 of 40).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from videollama.config import VisionEncoderConfig


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, width: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N,3,H,W) -> (N,P,W)
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a bias-free qkv projection plus learned q and v biases (k has none)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, width * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(width))
        self.v_bias = nn.Parameter(torch.zeros(width))
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, width = x.shape
        bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias.to(self.qkv.weight.dtype))
        q, k, v = qkv.view(n, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, length, width))


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))  # exact (erf) GELU


class Block(nn.Module):
    def __init__(self, cfg: VisionEncoderConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)
        self.attn = Attention(cfg.width, cfg.heads)
        self.norm2 = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)
        self.mlp = Mlp(cfg.width, cfg.mlp_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class EvaViT(nn.Module):
    """EVA ViT: (N,3,S,S) normalised images -> (N, 1+P, width) tokens (CLS first, no final norm)."""

    def __init__(self, cfg: VisionEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_patches + 1, cfg.width))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.gradient_checkpointing = False

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        x = x + self.pos_embed.to(x.dtype)
        for block in self.blocks:
            if self.gradient_checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x


class VisionEncoder(nn.Module):
    """EVA ViT followed by `ln_vision` (the BLIP-2 LayerNorm, eps 1e-5, computed in fp32)."""

    def __init__(self, cfg: VisionEncoderConfig) -> None:
        super().__init__()
        self.encoder = EvaViT(cfg)
        self.ln_vision = nn.LayerNorm(cfg.width, eps=cfg.ln_vision_eps)

    def forward(self, images: torch.Tensor, return_vit: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        feats = self.encoder(images)
        normed = F.layer_norm(
            feats.float(), self.ln_vision.normalized_shape, self.ln_vision.weight.float(),
            self.ln_vision.bias.float(), self.ln_vision.eps,
        ).to(feats.dtype)
        return (feats, normed) if return_vit else normed
