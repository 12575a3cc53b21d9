"""The training loss's decoder with its last layer at the labelled positions only: the full decoder's numbers."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

from videollama.config import load_preset
from videollama.model.label_decoder import LabelDecoder, label_positions, supports
from videollama.model.videollama import VideoLLaMA

LORA = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"]


def _llm(kv_heads: int, layers: int) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=layers, num_attention_heads=4,
                      num_key_value_heads=kv_heads, vocab_size=96, attn_implementation="sdpa")
    llm = get_peft_model(LlamaForCausalLM(cfg), LoraConfig(r=4, lora_alpha=8, target_modules=LORA))
    for name, p in llm.named_parameters():
        if "lora_B" in name:  # B starts at 0: make the adapters count
            torch.nn.init.normal_(p, std=0.1)
    return llm


def _batch(left_padded: bool):
    """(embeds, mask, labels) of 4 rows of different lengths, each labelling a few scattered positions."""
    g = torch.Generator().manual_seed(1)
    b, length = 4, 23
    lengths = [23, 17, 20, 9]
    mask = torch.zeros(b, length, dtype=torch.long)
    labels = torch.full((b, length), -100)
    for i, n in enumerate(lengths):
        span = slice(length - n, length) if left_padded else slice(0, n)
        mask[i, span] = 1
        real = torch.arange(length)[span]
        picked = real[torch.randperm(n, generator=g)[: 1 + i]]
        labels[i, picked[picked > real[0]]] = torch.randint(0, 96, (int((picked > real[0]).sum()),), generator=g)
    return torch.randn(b, length, 64, generator=g, requires_grad=True), mask, labels


def _loss_and_grads(llm, embeds, mask, labels, at_labels: bool):
    decoder, head = llm.get_base_model().get_decoder(), llm.get_base_model().get_output_embeddings()
    targets = labels[:, 1:]
    keep = targets != -100
    if at_labels:
        hidden = LabelDecoder(decoder)(embeds, mask, *label_positions(torch.nn.functional.pad(keep, (0, 1))))
    else:
        hidden = decoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state[:, :-1][keep]
    loss = torch.nn.functional.cross_entropy(head(hidden), targets[keep])
    params = [embeds] + [p for p in llm.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params)
    return loss.detach(), grads


@pytest.mark.parametrize("kv_heads", [4, 2])
@pytest.mark.parametrize("left_padded", [False, True])
@pytest.mark.parametrize("layers", [1, 3])
def test_last_layer_at_labels_equals_the_full_decoder(kv_heads, left_padded, layers):
    llm = _llm(kv_heads, layers)
    assert supports(llm.get_base_model().get_decoder())
    embeds, mask, labels = _batch(left_padded)
    full, full_grads = _loss_and_grads(llm, embeds, mask, labels, at_labels=False)
    part, part_grads = _loss_and_grads(llm, embeds, mask, labels, at_labels=True)
    assert torch.allclose(full, part, atol=1e-6), (full, part)
    for a, b in zip(full_grads, part_grads):
        assert torch.allclose(a, b, atol=1e-6), float((a - b).abs().max())
    assert any(float(g.abs().max()) > 1e-3 for g in full_grads[1:])  # the LoRA weights do get gradients


def test_only_plain_llama_decoders_take_it():
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=50)
    assert supports(LlamaForCausalLM(cfg).model)
    cfg.attention_dropout = 0.1
    assert not supports(LlamaForCausalLM(cfg).model)
    mistral = MistralConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                            num_key_value_heads=2, vocab_size=50)
    assert not supports(MistralForCausalLM(mistral).model)


def test_lm_loss_equals_the_llms_own_loss():
    """`VideoLLaMA.lm_loss` (which takes the label decoder for the tiny preset's LLaMA) against the LLM's forward
    with labels (every position, full logits): loss and gradients."""
    torch.manual_seed(0)
    model = VideoLLaMA(load_preset("tiny")).train()
    assert supports(model.llm.get_decoder())
    d = model.config.llm.hf_config["hidden_size"]
    embeds = torch.randn(3, 15, d, requires_grad=True)
    mask = torch.ones(3, 15, dtype=torch.long)
    mask[1, 11:] = 0
    mask[2, 6:] = 0
    labels = torch.full((3, 15), -100)
    labels[0, 9:15], labels[1, 8:11], labels[2, 3:6] = 7, 9, 11
    params = [embeds] + [p for p in model.llm.parameters()]
    ours = model.lm_loss(embeds, mask, labels)
    ours_grads = torch.autograd.grad(ours, params, allow_unused=True)
    ref = model.llm(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss
    ref_grads = torch.autograd.grad(ref, params, allow_unused=True)
    assert torch.allclose(ours, ref, atol=1e-6), (ours, ref)
    for a, b in zip(ours_grads, ref_grads):
        assert (a is None) == (b is None)
        assert a is None or torch.allclose(a, b, atol=1e-6), float((a - b).abs().max())
    assert sum(g is not None for g in ours_grads) > 10
