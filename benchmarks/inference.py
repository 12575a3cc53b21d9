"""Inference benchmark: batching, the media embedding cache, and pipeline overhead over bare `generate`.

    python benchmarks/inference.py [--repeats 5] [--new-tokens 32] [--threads N] [--json out.json]

Everything is measured side by side in one run on a random model on CPU, so only the ratios mean anything:

(a) batched vs sequential: the same 8 (media, question) prompts answered by `pipe.ask_batch(batch_size=8)`
    (left-padded, one forward pass per step for all 8) vs 8 calls of `pipe.ask`; media already encoded.
    Goal >= 3x. Both sides do the same prefill work (8 contexts of ~150 tokens, mostly media), so the gain
    comes from decoding; with answers of up to 64 tokens (the default here) decoding dominates.
(b) first-token latency: time to the first streamed piece of a second question about a video (its
    embeddings are cached) vs the first question (decode + encode the video). Goal >= 5x faster. What is
    left for the second question is the LLM prefill of the whole prompt, so the ratio is
    (encode + prefill) / prefill: the tiny preset's encoders are cheap, which caps it around 4-5x here.
(c) decode speed: tokens/s of `pipe.generate` (our stop rule, left padding, lock) vs the bare Hugging Face
    LLM's `generate` from the same `inputs_embeds`; prefill excluded (time(N tokens) - time(1 token)).
    Goal >= 90%.

Model: the `tiny` preset's media encoders with a somewhat larger LLM (hidden 256, 4 layers, 4 heads,
intermediate 688; the `tiny` LLM, hidden 48 x 2 layers, is so small that every step is pure Python
overhead and batching effects vanish in the noise). Greedy decoding throughout, so both sides of each
comparison produce the same tokens (checked).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
VIDEO = REPO / "src" / "videollama" / "assets" / "example.mp4"
LLM_OVERRIDES = dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4,
                     num_key_value_heads=4)
QUESTIONS = [
    "What is happening in the video?",
    "Describe the colours.",
    "Which shapes do you see, and how do they move across the screen?",
    "What do you hear?",
    "Is there a person?",
    "Summarise the clip in one sentence.",
    "What happens in the second half of the clip, after the green square appears?",
    "How many seconds long is it?",
]


def build_model(folder: Path) -> Path:
    from videollama.config import LLMConfig, load_preset
    from videollama.tiny import make_tiny_model

    base = load_preset("tiny")
    llm = LLMConfig(**{**base.llm.__dict__, "hf_config": {**base.llm.hf_config, **LLM_OVERRIDES}})
    return make_tiny_model(folder, base.replace(llm=llm), seed=0)


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def bench_batching(pipe, media, repeats: int, new_tokens: int) -> dict:
    requests = [(media[i % len(media)], q) for i, q in enumerate(QUESTIONS)]
    kw = dict(greedy=True, max_new_tokens=new_tokens)
    pipe.ask_batch(requests[:2], batch_size=2, **kw)  # warm-up
    seq_t, bat_t = [], []
    for _ in range(repeats):  # interleaved, so load changes hit both sides alike
        t, sequential = timed(lambda: [pipe.ask(m, q, **kw) for m, q in requests])
        seq_t.append(t)
        t, batched = timed(lambda: pipe.ask_batch(requests, batch_size=8, **kw))
        bat_t.append(t)
    assert batched == sequential, "batched answers differ from sequential ones"
    n_tokens = sum(len(pipe.tokenizer.encode(a, add_bos=False)) for a in batched)
    s, b = statistics.median(seq_t), statistics.median(bat_t)
    return dict(sequential_s=s, batched_s=b, ratio=s / b, prompts=len(requests), answer_tokens=n_tokens,
                same_answers=batched == sequential)


def first_piece_latency(pipe, question: str, new_tokens: int) -> float:
    t0 = time.perf_counter()
    first = None
    for _ in pipe.stream(VIDEO, question, greedy=True, max_new_tokens=new_tokens):
        if first is None:
            first = time.perf_counter() - t0
    return first if first is not None else time.perf_counter() - t0


def bench_cache(pipe, repeats: int, new_tokens: int) -> dict:
    first_t, second_t = [], []
    for _ in range(repeats + 1):
        pipe._cache.clear()  # the first question pays decoding + encoding
        a = first_piece_latency(pipe, QUESTIONS[0], new_tokens)
        b = first_piece_latency(pipe, QUESTIONS[1], new_tokens)
        first_t.append(a)
        second_t.append(b)
    first_t, second_t = first_t[1:], second_t[1:]  # the first round is a warm-up
    f, s = statistics.median(first_t), statistics.median(second_t)
    return dict(first_s=f, second_s=s, ratio=f / s)


def bench_decode(pipe, repeats: int, new_tokens: int) -> dict:
    session = pipe.chat(VIDEO)
    session._prepare_turn(QUESTIONS[0])
    context = session.context_embeds()
    conv = session.conv
    llm = pipe.model.llm
    mask = torch.ones(context.shape[:2], dtype=torch.long)
    pad = pipe.tokenizer.pad_token_id if pipe.tokenizer.pad_token_id is not None else pipe.tokenizer.eos_token_id

    def ours(n: int) -> list[int]:
        gen = pipe.settings.updated(greedy=True, max_new_tokens=n)
        return pipe.generate([context], gen, conv=conv)[0]

    @torch.inference_mode()
    def bare(n: int) -> list[int]:
        return llm.generate(inputs_embeds=context, attention_mask=mask, max_new_tokens=n, do_sample=False,
                            pad_token_id=pad)[0].tolist()

    ours(4), bare(4)  # warm-up
    rates: dict[str, list[float]] = {"ours": [], "bare": []}
    lengths = {}
    for _ in range(repeats):
        for name, fn in (("ours", ours), ("bare", bare)):
            t1, _ = timed(lambda: fn(1))
            tn, ids = timed(lambda: fn(new_tokens))
            lengths[name] = ids
            rates[name].append((len(ids) - 1) / max(tn - t1, 1e-9))
    o, b = statistics.median(rates["ours"]), statistics.median(rates["bare"])
    return dict(ours_tok_s=o, bare_tok_s=b, ratio=o / b, tokens=len(lengths["ours"]),
                same_tokens=lengths["ours"] == lengths["bare"][: len(lengths["ours"])])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    from videollama.inference.pipeline import VideoLLaMAPipeline

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    with tempfile.TemporaryDirectory(prefix="videollama-bench-") as tmp:
        folder = build_model(Path(tmp) / "model")
        pipe = VideoLLaMAPipeline.from_pretrained(folder)
        from PIL import Image
        import numpy as np

        image = Path(tmp) / "red.png"
        Image.fromarray(np.full((60, 80, 3), (200, 10, 10), np.uint8)).save(image)
        pipe.prepare(VIDEO), pipe.prepare(image)
        n_params = sum(p.numel() for p in pipe.model.llm.parameters()) / 1e6
        print(f"model: tiny preset encoders + LLM {LLM_OVERRIDES} ({n_params:.1f}M LLM params), "
              f"CPU, {torch.get_num_threads()} threads; greedy, {args.new_tokens} new tokens, "
              f"median of {args.repeats}", file=sys.stderr)
        a = bench_batching(pipe, [VIDEO, image], args.repeats, args.new_tokens)
        print(f"(a) {a}", file=sys.stderr)
        b = bench_cache(pipe, max(args.repeats, 9), args.new_tokens)  # cheap; noisy on a busy machine
        print(f"(b) {b}", file=sys.stderr)
        c = bench_decode(pipe, args.repeats, args.new_tokens)
        print(f"(c) {c}", file=sys.stderr)

    rows = [
        ("(a) batched vs sequential throughput, batch 8", f"{a['sequential_s']:.2f} s -> {a['batched_s']:.2f} s",
         a["ratio"], ">= 3.0x", a["ratio"] >= 3.0),
        ("(b) first-token latency, 2nd vs 1st question", f"{b['first_s'] * 1e3:.0f} ms -> {b['second_s'] * 1e3:.0f} ms",
         b["ratio"], ">= 5.0x", b["ratio"] >= 5.0),
        ("(c) decode tok/s, pipeline vs bare HF generate", f"{c['ours_tok_s']:.0f} vs {c['bare_tok_s']:.0f} tok/s",
         c["ratio"], ">= 0.90x", c["ratio"] >= 0.90),
    ]
    w = max(len(r[0]) for r in rows)
    print(f"{'benchmark':<{w}}  {'measured':<24} {'ratio':>7}  {'goal':<8} met")
    for name, detail, ratio, goal, ok in rows:
        print(f"{name:<{w}}  {detail:<24} {ratio:>6.2f}x  {goal:<8} {'yes' if ok else 'NO'}")
    print(f"notes: (a) {a['prompts']} prompts, {a['answer_tokens']} answer tokens, answers identical: "
          f"{a['same_answers']}; (c) {c['tokens']} tokens per run, same tokens: {c['same_tokens']}")
    if args.json:
        args.json.write_text(json.dumps({"batching": a, "cache": b, "decode": c}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
