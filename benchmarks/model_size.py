"""Parameter counts and weight bytes of the real Video-LLaMA presets, built on the meta device (no memory).

    python benchmarks/model_size.py [--json OUT]

Per module: parameters and weight bytes if every weight is fp32, bf16 (= fp16, same size), and with the LLM in
8-bit / 4-bit (bitsandbytes estimate: 1 / 0.5 byte per LLM Linear weight, everything else bf16). Totals are given
for the full model and for inference only (without `imagebind_vision`, which only the official AL *training* path
uses). Parameters only: the buffers (`log_logit_scale`, RoPE `inv_freq`) are a few hundred bytes.

It also recomputes the official loader's weight footprint from SPEC §1.2/§1.7/§1.12/quirk 12 and checks the trainable
parameter counts of the VL and AL branches against SPEC §1.2.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from videollama.config import load_preset
from videollama.model.videollama import VideoLLaMA

PRESETS = ["videollama2-7b-finetuned", "videollama2-13b-finetuned", "videollama1-vicuna-7b", "videollama1-vicuna-13b"]
GROUPS = {  # report row -> top-level attributes of VideoLLaMA
    "vision (EVA ViT + ln_vision)": ["vision"],
    "image_qformer (+ queries)": ["image_qformer"],
    "VL branch (video_qformer, frame pos, video_proj)": ["video_qformer", "frame_position_embedding", "video_proj"],
    "audio_encoder (ImageBind audio)": ["audio_encoder"],
    "imagebind_vision (AL training only)": ["imagebind_vision"],
    "AL branch (audio_qformer, audio pos, audio_proj)": ["audio_qformer", "audio_position_embedding", "audio_proj"],
    "llm": ["llm"],
}
TRAINING_ONLY = {"imagebind_vision (AL training only)"}
# SPEC §1.2: official trainable counts (VL 7B/13B, AL 7B/13B) and the Q-Formers on their own.
OFFICIAL_TRAINABLE = {
    ("vl", 4096): 22_104_064, ("vl", 5120): 22_891_520, ("al", 4096): 22_855_680, ("al", 5120): 23_643_136,
}
OFFICIAL_VIDEO_QFORMER = 18_905_088
OFFICIAL_AUDIO_QFORMER = 19_691_520
GB, GIB = 1e9, 2**30


def numel(modules: list[nn.Module]) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def llm_linear_weights(llm: nn.Module) -> int:
    """LLM Linear weights bitsandbytes would quantize: every nn.Linear except the output head (transformers skips lm_head)."""
    head = llm.get_output_embeddings()
    return sum(m.weight.numel() for m in llm.modules() if isinstance(m, nn.Linear) and m is not head)


def module_rows(model: VideoLLaMA) -> list[dict]:
    children = dict(model.named_children())
    rows = []
    for label, names in GROUPS.items():
        mods = [children[n] for n in names if n in children and children[n] is not None]
        if not mods:
            continue
        n = numel(mods)
        row = {"module": label, "params": n, "fp32": 4 * n, "bf16": 2 * n, "fp16": 2 * n, "int8_llm": 2 * n, "int4_llm": 2 * n}
        if names == ["llm"]:
            lin = llm_linear_weights(model.llm)
            row["int8_llm"] = 2 * (n - lin) + 1 * lin
            row["int4_llm"] = 2 * (n - lin) + 0.5 * lin
            row["llm_linear_weights"] = lin
        rows.append(row)
    return rows


def total(rows: list[dict], inference_only: bool) -> dict:
    keep = [r for r in rows if not (inference_only and r["module"] in TRAINING_ONLY)]
    out = {"module": "TOTAL (inference only)" if inference_only else "TOTAL (all modules)"}
    for k in ("params", "fp32", "bf16", "fp16", "int8_llm", "int4_llm"):
        out[k] = sum(r[k] for r in keep)
    return out


# ---- the official loader's footprint ---------------------------------------------------------------------

def _trunk(width: int, depth: int, bias_kv: bool) -> int:
    """ImageBind trunk: per block LN, MHA in_proj (+bias), out_proj, optional bias_k/bias_v, LN, MLP 4x (biases)."""
    per_block = 2 * width + (3 * width * width + 3 * width) + (width * width + width) + (2 * width if bias_kv else 0) \
        + 2 * width + (4 * width * width + 4 * width) + (4 * width * width + width)
    return depth * per_block


def imagebind_huge_params() -> dict[str, int]:
    """All six ImageBind-Huge modalities (SPEC §1.7: widths/depths; ImageBind's public architecture for stems/heads).

    Assumptions: MLP ratio 4 everywhere; add_bias_kv on audio/depth/thermal/IMU only; stems without bias; heads are
    LayerNorm + bias-free Linear(width -> 1024); text has a 49,408 x 1024 token table, 77 positions and a learnable
    logit scale; depth/thermal use 16x16 patches on 224x224 (196 + CLS), IMU a Linear(48 -> 512) stem on 250 tokens.
    Audio and vision are also checked against our own modules (which mirror the official shapes exactly).
    """
    out = 1024
    vision = _trunk(1280, 32, False) + 3 * 2 * 14 * 14 * 1280 + 257 * 1280 + 1280 + 2 * 1280 + 2 * 1280 + 1280 * out
    text = _trunk(1024, 24, False) + 49408 * 1024 + 77 * 1024 + 2 * 1024 + 1024 * out + 1
    audio = _trunk(768, 12, True) + 16 * 16 * 768 + 2 * 768 + 768 + 229 * 768 + 2 * 768 + 768 * out
    depth = _trunk(384, 12, True) + 16 * 16 * 384 + 2 * 384 + 384 + 197 * 384 + 2 * 384 + 384 * out
    thermal = _trunk(768, 12, True) + 16 * 16 * 768 + 2 * 768 + 768 + 197 * 768 + 2 * 768 + 768 * out
    imu = _trunk(512, 6, True) + 48 * 512 + 2 * 512 + 512 + 251 * 512 + 2 * 512 + 512 * out
    return {"vision": vision, "text": text, "audio": audio, "depth": depth, "thermal": thermal, "imu": imu}


def official_footprint(model: VideoLLaMA, imagebind: dict[str, int]) -> dict[str, float]:
    """Bytes of weights the official code holds at inference (SPEC §1.3 fp16 cast, §1.2/§1.12 dtypes, quirk 12)."""
    eva = model.vision.encoder
    half = sum(p.numel() for m in eva.modules() if isinstance(m, (nn.Linear, nn.Conv2d)) for p in m.parameters())
    eva_bytes = 2 * half + 4 * (numel([eva]) - half)  # q/v bias, cls, pos_embed, LayerNorms stay fp32
    parts = {
        "EVA (Linear/Conv fp16, rest fp32)": eva_bytes,
        "ln_vision + BLIP-2 Q-Former + queries (fp32)": 4 * (numel([model.vision.ln_vision, model.image_qformer])),
        "VL branch (fp32)": 4 * numel([model.video_qformer, model.frame_position_embedding, model.video_proj]),
    }
    if model.audio_encoder is not None:
        parts["ImageBind-Huge, all 6 modalities (fp32)"] = 4 * sum(imagebind.values())
        parts["AL branch (fp32)"] = 4 * numel([model.audio_qformer, model.audio_position_embedding, model.audio_proj])
    parts["LLM (bf16)"] = 2 * numel([model.llm])
    return parts


def fmt_n(n: float) -> str:
    return f"{n / 1e6:,.1f} M"


def fmt_b(b: float) -> str:
    return f"{b / GB:,.2f} GB"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the results to this JSON file")
    args = ap.parse_args(argv)
    console = Console(width=140)
    results: dict = {"presets": {}}
    imagebind = imagebind_huge_params()
    first_checks = True

    for name in PRESETS:
        config = load_preset(name)
        with torch.device("meta"):
            model = VideoLLaMA(config)
        rows = module_rows(model)
        totals = [total(rows, False), total(rows, True)] if model.imagebind_vision is not None else [total(rows, False)]
        table = Table(title=f"{name}  (LLM hidden {config.llm.hidden_size}, audio branch: {config.has_audio})")
        for col in ("module", "params", "fp32", "bf16", "fp16", "LLM 8-bit", "LLM 4-bit"):
            table.add_column(col, justify="left" if col == "module" else "right")
        for r in rows + totals:
            style = "bold" if r["module"].startswith("TOTAL") else None
            table.add_row(r["module"], fmt_n(r["params"]), fmt_b(r["fp32"]), fmt_b(r["bf16"]), fmt_b(r["fp16"]),
                          fmt_b(r["int8_llm"]), fmt_b(r["int4_llm"]), style=style)
        console.print(table)
        inference = totals[-1]
        entry: dict = {"modules": rows, "totals": totals}

        # Trainable counts of the two branches vs SPEC §1.2.
        h = config.llm.hidden_size
        checks = []
        vl = numel([model.video_qformer, model.frame_position_embedding, model.video_proj])
        vq = model.video_qformer
        vq_no_queries = numel([vq]) - vq.query_tokens.numel()
        checks.append(("VL trainable (video_qformer + queries, frame pos, video_proj)", vl, OFFICIAL_TRAINABLE.get(("vl", h))))
        checks.append(("video Q-Former without its query tokens", vq_no_queries, OFFICIAL_VIDEO_QFORMER))
        if model.audio_encoder is not None:
            al = numel([model.audio_qformer, model.audio_position_embedding, model.audio_proj])
            aq = model.audio_qformer
            checks.append(("AL trainable (audio_qformer + queries, audio pos, audio_proj)", al, OFFICIAL_TRAINABLE.get(("al", h))))
            checks.append(("audio Q-Former without its query tokens", numel([aq]) - aq.query_tokens.numel(), OFFICIAL_AUDIO_QFORMER))
        ct = Table(title=f"{name}: trainable parameters vs SPEC §1.2")
        for col in ("count", "ours", "official", "match"):
            ct.add_column(col, justify="left" if col == "count" else "right")
        for label, ours, official in checks:
            ok = "n/a" if official is None else ("yes" if ours == official else f"NO ({ours - official:+,})")
            ct.add_row(label, f"{ours:,}", "-" if official is None else f"{official:,}", ok)
        console.print(ct)
        if first_checks:
            console.print(
                "  Note: SPEC's 'video/audio Q-Former' figures exclude the learned query tokens "
                f"({vq.query_tokens.numel():,} = 32x768 video, 8x768 = 6,144 audio) but include the embeddings LayerNorm "
                "(1,536), which the queries pass through; our `video_qformer`/`audio_qformer` modules own their query tokens."
            )
            first_checks = False
        entry["trainable_checks"] = [{"count": c, "ours": o, "official": off} for c, o, off in checks]

        # Official footprint for comparison (weights only).
        parts = official_footprint(model, imagebind)
        official_total = sum(parts.values())
        entry["official_weight_bytes"] = {**parts, "total": official_total}
        ot = Table(title=f"{name}: official loader, weights held at inference (computed from SPEC)")
        ot.add_column("part")
        ot.add_column("bytes", justify="right")
        for k, v in parts.items():
            ot.add_row(k, fmt_b(v))
        ot.add_row("TOTAL official", fmt_b(official_total), style="bold")
        ot.add_row("TOTAL ours, inference only, bf16", fmt_b(inference["bf16"]), style="bold")
        ot.add_row("ratio official / ours", f"{official_total / inference['bf16']:.2f}x")
        console.print(ot)
        results["presets"][name] = entry

        if name == "videollama2-7b-finetuned":
            b = inference["bf16"]
            fits = b < 16 * GB
            results["goal_7b_vl_al_bf16_under_16GB"] = {"bytes": b, "fits_16GB": fits, "fits_16GiB": b < 16 * GIB}
            full = totals[0]["bf16"]
            console.print(
                f"[bold]GOAL: VL+AL 7B (videollama2-7b-finetuned), bf16, inference modules: {b / GB:.2f} GB "
                f"({b / GIB:.2f} GiB) -> {'FITS' if fits else 'DOES NOT FIT'} in 16 GB of weights, headroom "
                f"{(16 * GB - b) / GB:.2f} GB (16 GiB: {'fits' if b < 16 * GIB else 'does not fit'}).[/bold]\n"
                f"  With imagebind_vision also built (AL training path): {full / GB:.2f} GB ({full / GIB:.2f} GiB), "
                f"{'fits' if full < 16 * GB else 'over'} 16 GB."
                + (" The preset as shipped sets audio_encoder.vision, so VideoLLaMA(config), convert and from_pretrained"
                   " all build/load imagebind_vision: the 16 GB figure needs audio_encoder.vision: null for inference.\n"
                   if config.audio_encoder is not None and config.audio_encoder.vision is not None else "\n")
                +
                f"  Official loader, weights only (same counting): {official_total / GB:.2f} GB "
                f"({official_total / GIB:.2f} GiB), {official_total / b:.2f}x ours."
            )

    ib = imagebind
    console.print(
        "ImageBind-Huge, all modalities (analytic, assumptions in imagebind_huge_params): "
        + ", ".join(f"{k} {v / 1e6:.1f} M" for k, v in ib.items())
        + f"; total {sum(ib.values()) / 1e9:.3f} B params = {4 * sum(ib.values()) / GB:.2f} GB "
        f"({4 * sum(ib.values()) / GIB:.2f} GiB) fp32 (SPEC quirk 12: ~1.2B, ~4.5 GB file)."
    )
    with torch.device("meta"):
        ref = VideoLLaMA(load_preset(PRESETS[0]))
    ours_audio, ours_vision = numel([ref.audio_encoder]), numel([ref.imagebind_vision])
    console.print(
        f"  cross-check vs our modules: audio {ours_audio:,} (analytic {ib['audio']:,}), "
        f"vision {ours_vision:,} (analytic {ib['vision']:,})"
    )
    results["imagebind_huge_params"] = ib
    results["imagebind_crosscheck"] = {"audio_ours": ours_audio, "vision_ours": ours_vision}
    console.print(
        "About the official '>36 GB' figure: the official code's *weights* come to the total above (~21 GB for 7B "
        "VL+AL); a figure above 36 GB therefore also counts non-weight memory (activations, KV cache, CUDA context and "
        "allocator cache, the fp32 EVA built before its fp16 cast, fp32 media embeddings) that this script does not model."
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1, default=float)
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
