"""The LLM decoder of the training loss, with its last layer run only where a label is predicted.

A causal LM's loss reads the last hidden state only at the positions that predict a label: the answer tokens, about
20 of the 275 tokens of a world instruction record. Every layer but the last must run at every position (its outputs
are the next layer's keys and values), but the last layer's queries, attention output, MLP and the final norm are
needed only at those positions. For a shallow LLM that is a large share of the work (the tiny world model's LLM has
2 layers); for LLaMA-2-7B it is 1/32 of the decoder. transformers has no such option (`logits_to_keep` trims the
output head only, which `VideoLLaMA.lm_loss` already does), so the last layer is written out here, from the layer's
own modules (LoRA-wrapped projections included), for Llama-architecture decoders (LLaMA, Vicuna, SmolLM2); any other
decoder takes the plain path. Same numbers as the full decoder to float rounding (tests/model/test_label_decoder.py).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def supports(decoder: nn.Module) -> bool:
    """Whether `decoder` is a transformers LlamaModel whose layers are plain Llama decoder layers without
    attention dropout (what `LabelDecoder` re-implements the last of)."""
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaModel

    cfg = getattr(decoder, "config", None)
    return (isinstance(decoder, LlamaModel) and len(decoder.layers) > 0
            and all(type(layer) is LlamaDecoderLayer for layer in decoder.layers)
            and not getattr(cfg, "attention_dropout", 0.0)
            and getattr(cfg, "_attn_implementation", "sdpa") in ("sdpa", "eager"))


def label_positions(keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(rows, cols, slot, width) of a (B, L) boolean mask of the positions to compute, in row-major order (the order
    of `hidden[keep]`): `slot` numbers them within their row, `width` is the most any row has."""
    rows, cols = keep.nonzero(as_tuple=True)
    slot = keep.long().cumsum(1)[rows, cols] - 1
    return rows, cols, slot, int(keep.sum(1).max()) if rows.numel() else 0


class LabelDecoder(nn.Module):
    """Wraps a LlamaModel: forward(inputs_embeds (B, L, D), attention_mask (B, L), rows, cols, slot, width) -> the
    final-norm hidden states (N, D) at positions (rows[i], cols[i]) (`label_positions`), for right- or left-padded
    batches alike (positions 0..L-1, as LlamaModel numbers them without a cache)."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, rows: torch.Tensor,
                cols: torch.Tensor, slot: torch.Tensor, width: int) -> torch.Tensor:
        from transformers.masking_utils import create_causal_mask

        d = self.decoder
        positions = torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device).unsqueeze(0)
        causal = create_causal_mask(config=d.config, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                    cache=None, position_ids=positions)
        cos, sin = d.rotary_emb(inputs_embeds, position_ids=positions)
        hidden = inputs_embeds
        for layer in d.layers[:-1]:
            hidden = layer(hidden, attention_mask=causal, position_ids=positions, position_embeddings=(cos, sin))
        out = self._last_layer(d.layers[-1], hidden, attention_mask, cos[0], sin[0], rows, cols, slot, width)
        return d.norm(out)

    @staticmethod
    def _last_layer(layer: nn.Module, hidden: torch.Tensor, attention_mask: torch.Tensor, cos: torch.Tensor,
                    sin: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, slot: torch.Tensor,
                    width: int) -> torch.Tensor:
        """LlamaDecoderLayer.forward with queries at (rows, cols) only: keys and values everywhere."""
        from transformers.models.llama.modeling_llama import repeat_kv, rotate_half

        attn = layer.self_attn
        b, length, _ = hidden.shape
        hd = attn.head_dim
        x = layer.input_layernorm(hidden)
        k = attn.k_proj(x).view(b, length, -1, hd).transpose(1, 2)  # (B, Hkv, L, hd)
        v = attn.v_proj(x).view(b, length, -1, hd).transpose(1, 2)
        k = k * cos[None, None] + rotate_half(k) * sin[None, None]
        k, v = repeat_kv(k, attn.num_key_value_groups), repeat_kv(v, attn.num_key_value_groups)
        q = attn.q_proj(x[rows, cols]).view(rows.shape[0], -1, hd)  # (N, H, hd)
        q = q * cos[cols][:, None] + rotate_half(q) * sin[cols][:, None]
        # queries laid out per row, (B, H, width, hd); a padding slot may see key 0 only (no all-masked row: NaN)
        queries = q.new_zeros(b, width, q.shape[1], hd).index_put((rows, slot), q).transpose(1, 2)
        query_pos = torch.full((b, width), -1, dtype=cols.dtype, device=cols.device).index_put((rows, slot), cols)
        keys = torch.arange(length, device=cols.device)
        allowed = (keys <= query_pos.clamp(min=0)[..., None]) & attention_mask.bool()[:, None, :]
        allowed = allowed | ((query_pos < 0)[..., None] & (keys == 0))
        out = F.scaled_dot_product_attention(queries, k, v, attn_mask=allowed[:, None], scale=attn.scaling)
        out = out.transpose(1, 2)[rows, slot].reshape(rows.shape[0], -1)  # (N, H * hd)
        h = hidden[rows, cols] + attn.o_proj(out)
        return h + layer.mlp(layer.post_attention_layernorm(h))
