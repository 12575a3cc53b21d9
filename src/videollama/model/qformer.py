"""Q-Formers (image, video, audio) hosted by transformers' `Blip2QFormerModel`.

The HF class expresses the LAVIS/Video-LLaMA Q-Former exactly when it runs queries only
(no text input): LayerNorm on the queries, self-attention, cross-attention every
`cross_attention_freq` layers, then the query FFN. Learned queries live outside it.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Blip2QFormerConfig, Blip2QFormerModel

from videollama.config import QFormerConfig


class QFormer(nn.Module):
    """Learned queries cross-attending a token memory: (N, S, encoder_width) -> (N, num_queries, hidden)."""

    def __init__(self, cfg: QFormerConfig) -> None:
        super().__init__()
        hf_cfg = Blip2QFormerConfig(
            hidden_size=cfg.hidden,
            num_attention_heads=cfg.heads,
            intermediate_size=cfg.intermediate,
            num_hidden_layers=cfg.layers,
            cross_attention_frequency=cfg.cross_attention_freq,
            encoder_hidden_size=cfg.encoder_width,
            layer_norm_eps=cfg.layer_norm_eps,
            max_position_embeddings=cfg.max_position_embeddings,
            hidden_act="gelu",
            attention_probs_dropout_prob=cfg.attention_dropout,
            hidden_dropout_prob=cfg.hidden_dropout,
            use_qformer_text_input=False,
        )
        hf_cfg._attn_implementation = "sdpa"
        self.query_tokens = nn.Parameter(torch.zeros(1, cfg.num_query_tokens, cfg.hidden))
        self.model = Blip2QFormerModel(hf_cfg)

    def forward(self, memory: torch.Tensor, memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        if memory_mask is None:
            memory_mask = torch.ones(memory.shape[:2], dtype=torch.long, device=memory.device)
        queries = self.query_tokens.expand(memory.shape[0], -1, -1)
        out = self.model(query_embeds=queries, encoder_hidden_states=memory, encoder_attention_mask=memory_mask)
        return out.last_hidden_state
