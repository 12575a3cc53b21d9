"""Peak memory of `convert_official` on a synthetic base-size official checkpoint set, vs a naive converter.

    python benchmarks/convert_memory.py [--workdir DIR] [--keep] [--json OUT]

Writes official-layout files (names from our key tables run backwards, `KeyMap(rows).to_official`, plus the keys the
official files carry that the converter must skip) into a temporary folder:

  eva_vit_g.pth                   raw state dict, fp16, EVA ViT-B-ish (768 wide, 12 blocks used + 1 extra block in the file)
  blip2_pretrained_flant5xxl.pth  {"model": sd}, fp32, bert-base Q-Former (12 layers) + ln_vision + text-side parts + t5_proj
  imagebind_huge.pth              raw, fp32, ImageBind audio 768x12 + vision 768x12 (other modalities left out)
  vl_ckpt.pth / al_ckpt.pth       {"model": sd}, fp32, the branch weights + runner buffers (position_ids, inv_freq)
  llama/                          Hugging Face LLaMA folder, ~220M params, bf16 safetensors

Each converter runs in its own subprocess; its peak RSS is VmHWM from /proc/self/status (exact), and the parent polls
/proc/PID/status every 5 ms for the anonymous / file-backed split (memory-mapped pages count as RssFile). The baseline is a
subprocess that only imports the converter (Python + torch + transformers + videollama).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from videollama.checkpoint.convert import expected_shapes
from videollama.checkpoint.keymap import KeyMap
from videollama.checkpoint.mappings import SLOTS
from videollama.config import (
    AudioEncoderConfig, ImageBindModalityConfig, LLMConfig, QFormerConfig, VideoLLaMAConfig, VisionEncoderConfig,
)

FILES = {"eva": "eva_vit_g.pth", "blip2": "blip2_pretrained_flant5xxl.pth", "imagebind": "imagebind_huge.pth",
         "vl": "vl_ckpt.pth", "al": "al_ckpt.pth"}
LLM_HF = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 1024, "intermediate_size": 2816,
    "num_hidden_layers": 12, "num_attention_heads": 16, "num_key_value_heads": 16, "vocab_size": 32000,
    "rms_norm_eps": 1e-5, "max_position_embeddings": 2048, "hidden_act": "silu", "rope_theta": 10000.0,
    "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": False,
}
MB = 1e6

# The child processes. Each prints one JSON line with its own VmHWM (peak RSS) as the last line of stdout.
CHILD_PRELUDE = r"""
import json, sys, time
t0 = time.perf_counter()
def report(extra=None):
    status = dict(line.split(':', 1) for line in open('/proc/self/status') if ':' in line)
    kb = lambda k: int(status[k].split()[0]) * 1024
    out = {'vm_hwm': kb('VmHWM'), 'vm_rss_end': kb('VmRSS'), 'wall_s': time.perf_counter() - t0}
    out.update(extra or {})
    print(json.dumps(out))
"""
CHILD_BASELINE = CHILD_PRELUDE + r"""
import torch, videollama.checkpoint.convert, videollama.model.videollama
report()
"""
CHILD_OURS = CHILD_PRELUDE + r"""
from pathlib import Path
from videollama.checkpoint.convert import convert_official
from videollama.config import VideoLLaMAConfig
work = Path(sys.argv[1])
spec = json.loads((work / 'sources.json').read_text())
config = VideoLLaMAConfig.from_json(work / 'config.json')
convert_official(work / 'out_ours', config, spec['sources'], spec['llm'], overwrite=True)
report()
"""
CHILD_NAIVE = CHILD_PRELUDE + r"""
import re, shutil, torch
from pathlib import Path
from safetensors.torch import save_file
from videollama.checkpoint.keymap import KeyMap
from videollama.checkpoint.mappings import SLOTS
from videollama.config import VideoLLaMAConfig
work = Path(sys.argv[1])
spec = json.loads((work / 'sources.json').read_text())
config = VideoLLaMAConfig.from_json(work / 'config.json')
state = {}
for name in ('eva', 'blip2', 'imagebind', 'vl', 'al'):
    obj = torch.load(spec['sources'][name], map_location='cpu', weights_only=True)  # whole file in memory, no mmap
    sd = obj['model'] if SLOTS[name].container == 'model' else obj
    keymap = KeyMap(SLOTS[name].rows)
    for key, value in sd.items():
        block = re.match(r'blocks\.(\d+)\.', key) if name == 'eva' else None
        if block and int(block.group(1)) >= config.vision.depth:
            continue
        matched, ours = keymap.to_ours(key)
        if ours is not None:
            state[ours] = value  # everything in one dict
    del obj, sd
out = work / 'out_naive'
shutil.rmtree(out, ignore_errors=True)
out.mkdir()
save_file(state, out / 'model.safetensors')  # one file, one in-memory serialisation
shutil.copytree(spec['llm'], out / 'llm')
report({'tensors': len(state)})
"""


def synthetic_config() -> VideoLLaMAConfig:
    base = ImageBindModalityConfig(width=768, depth=12, heads=12, mlp_hidden=3072)
    return VideoLLaMAConfig(
        vision=VisionEncoderConfig(width=768, depth=12, heads=12, mlp_hidden=3072),
        image_qformer=QFormerConfig(encoder_width=768),
        audio_encoder=AudioEncoderConfig(audio=base, vision=base),
        llm=LLMConfig(hf_config=dict(LLM_HF), dtype="bfloat16"),
    )


def official_state(slot: str, expected: dict[str, torch.Size], dtype: torch.dtype, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Random tensors under the official names of every weight this slot provides."""
    keymap = KeyMap(SLOTS[slot].rows)
    out = {}
    for ours, shape in expected.items():
        if ours.startswith(SLOTS[slot].provides):
            official = keymap.to_official(ours)
            if official is None:
                raise RuntimeError(f"no official name for {ours} in the {slot} table")
            out[official] = torch.randn(tuple(shape), generator=gen, dtype=torch.float32).to(dtype)
    return out


def make_official_set(work: Path, config: VideoLLaMAConfig) -> dict[str, Path]:
    gen = torch.Generator().manual_seed(0)
    expected = expected_shapes(config)
    rnd = lambda *shape: torch.randn(*shape, generator=gen)  # noqa: E731
    d, hq, inter = config.vision.width, config.image_qformer.hidden, config.image_qformer.intermediate

    eva = official_state("eva", expected, torch.float16, gen)
    depth = config.vision.depth
    for key in [k for k in eva if k.startswith("blocks.0.")]:  # the file holds one more block than the model uses
        eva[key.replace("blocks.0.", f"blocks.{depth}.", 1)] = eva[key].clone()
    torch.save(eva, work / FILES["eva"])
    del eva

    blip2 = official_state("blip2", expected, torch.float32, gen)
    vocab = 30523
    blip2["Qformer.bert.embeddings.word_embeddings.weight"] = rnd(vocab, hq)
    blip2["Qformer.bert.embeddings.position_embeddings.weight"] = rnd(512, hq)
    blip2["Qformer.bert.embeddings.position_ids"] = torch.arange(512)[None]
    for i in range(config.image_qformer.layers):  # text FFN of every layer (ignored)
        pre = f"Qformer.bert.encoder.layer.{i}"
        blip2.update({f"{pre}.intermediate.dense.weight": rnd(inter, hq), f"{pre}.intermediate.dense.bias": rnd(inter),
                      f"{pre}.output.dense.weight": rnd(hq, inter), f"{pre}.output.dense.bias": rnd(hq),
                      f"{pre}.output.LayerNorm.weight": rnd(hq), f"{pre}.output.LayerNorm.bias": rnd(hq)})
    blip2.update({"Qformer.cls.predictions.bias": rnd(vocab), "Qformer.cls.predictions.transform.dense.weight": rnd(hq, hq),
                  "Qformer.cls.predictions.transform.dense.bias": rnd(hq),
                  "Qformer.cls.predictions.transform.LayerNorm.weight": rnd(hq),
                  "Qformer.cls.predictions.transform.LayerNorm.bias": rnd(hq),
                  "Qformer.cls.predictions.decoder.weight": rnd(vocab, hq),
                  "t5_proj.weight": rnd(4096, hq), "t5_proj.bias": rnd(4096)})
    torch.save({"model": blip2}, work / FILES["blip2"])
    del blip2
    assert d == config.image_qformer.encoder_width

    torch.save(official_state("imagebind", expected, torch.float32, gen), work / FILES["imagebind"])

    n_layers = LLM_HF["num_hidden_layers"]
    head_dim = LLM_HF["hidden_size"] // LLM_HF["num_attention_heads"]
    runner = {f"llama_model.model.layers.{i}.self_attn.rotary_emb.inv_freq": rnd(head_dim // 2) for i in range(n_layers)}
    runner["Qformer.bert.embeddings.position_ids"] = torch.arange(512)[None]
    for slot in ("vl", "al"):
        torch.save({"model": {**official_state(slot, expected, torch.float32, gen), **runner}}, work / FILES[slot])

    from videollama.model.videollama import build_llm

    torch.manual_seed(0)
    llm = build_llm(config)
    llm.save_pretrained(work / "llama", safe_serialization=True)
    del llm
    return {k: work / v for k, v in FILES.items()}


def run_child(code: str, work: Path) -> dict:
    """Run `code` in a fresh interpreter; poll its RssAnon/RssFile; return its report plus the polled peaks."""
    proc = subprocess.Popen([sys.executable, "-c", code, str(work)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks = {"RssAnon": 0, "RssFile": 0, "RssShmem": 0}
    status_path = f"/proc/{proc.pid}/status"
    while proc.poll() is None:
        try:
            with open(status_path) as fh:
                for line in fh:
                    key = line.split(":", 1)[0]
                    if key in peaks:
                        peaks[key] = max(peaks[key], int(line.split()[1]) * 1024)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
        time.sleep(0.005)
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"child failed (rc {proc.returncode}):\n{stderr[-3000:]}")
    report = json.loads(stdout.strip().splitlines()[-1])
    report.update({f"peak_{k}": v for k, v in peaks.items()})
    return report


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", help="where to write the synthetic files (default: a new temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--json", help="write the results to this JSON file")
    args = ap.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    console = Console(width=130)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="videollama-convert-mem-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        config = synthetic_config()
        t0 = time.perf_counter()
        sources = make_official_set(work, config)
        config.to_json(work / "config.json")
        (work / "sources.json").write_text(json.dumps({"sources": {k: str(v) for k, v in sources.items()},
                                                        "llm": str(work / "llama")}))
        sizes = {FILES[k]: v.stat().st_size for k, v in sources.items()}
        sizes["llama/ (HF folder)"] = folder_bytes(work / "llama")
        media_in = sum(v for k, v in sizes.items() if not k.startswith("llama"))
        total_in = sum(sizes.values())
        console.print(f"synthetic official set written to {work} in {time.perf_counter() - t0:.1f} s")
        ft = Table(title="input files (official layouts)")
        ft.add_column("file")
        ft.add_column("size", justify="right")
        for k, v in sizes.items():
            ft.add_row(k, f"{v / MB:,.0f} MB")
        ft.add_row("total", f"{total_in / MB:,.0f} MB", style="bold")
        console.print(ft)

        runs = {"baseline (import only)": run_child(CHILD_BASELINE, work),
                "ours: convert_official": run_child(CHILD_OURS, work),
                "naive: torch.load (no mmap) + one dict + one save_file": run_child(CHILD_NAIVE, work)}
        out_ours = folder_bytes(work / "out_ours") - folder_bytes(work / "out_ours" / "llm")
        out_naive = folder_bytes(work / "out_naive") - folder_bytes(work / "out_naive" / "llm")
        base = runs["baseline (import only)"]["vm_hwm"]
        largest = max(v for k, v in sizes.items() if not k.startswith("llama"))

        table = Table(title="peak RSS of each converter subprocess (VmHWM)")
        for col in ("run", "peak RSS", "polled peak anon / file", "wall", "peak / all inputs", "peak / media .pth",
                    "(peak - baseline) / media .pth"):
            table.add_column(col, justify="left" if col == "run" else "right")
        results = {"input_bytes": sizes, "input_total": total_in, "input_media": media_in, "largest_media_file": largest,
                   "output_bytes": {"ours": out_ours, "naive": out_naive}, "runs": runs}
        for name, r in runs.items():
            peak = r["vm_hwm"]
            is_base = name.startswith("baseline")
            table.add_row(
                name, f"{peak / MB:,.0f} MB", f"{r['peak_RssAnon'] / MB:,.0f} / {r['peak_RssFile'] / MB:,.0f} MB",
                f"{r['wall_s']:.1f} s", f"{peak / total_in:.2f}x", f"{peak / media_in:.2f}x",
                "-" if is_base else f"{(peak - base) / media_in:.2f}x",
            )
            r["ratio_all_inputs"] = peak / total_in
            r["ratio_media_inputs"] = peak / media_in
        console.print(table)
        ours = runs["ours: convert_official"]["vm_hwm"]
        naive = runs["naive: torch.load (no mmap) + one dict + one save_file"]["vm_hwm"]
        results["ours_vs_naive"] = ours / naive
        console.print(
            f"[bold]ours: peak RSS {ours / MB:,.0f} MB = {ours / total_in:.2f}x the {total_in / MB:,.0f} MB of input files "
            f"(goal < 1.3x: {'met' if ours / total_in < 1.3 else 'NOT met'}); naive: {naive / total_in:.2f}x; "
            f"ours / naive = {ours / naive:.2f}[/bold]\n"
            f"  media .pth files only ({media_in / MB:,.0f} MB; the LLM folder is copied file to file by both): "
            f"ours {ours / media_in:.2f}x, naive {naive / media_in:.2f}x. Largest single .pth: {largest / MB:,.0f} MB; "
            f"baseline import RSS {base / MB:,.0f} MB.\n"
            f"  media weights written (without llm/): ours {out_ours / MB:,.0f} MB, naive {out_naive / MB:,.0f} MB. "
            f"Ours holds about one input file's mapped pages at a time (peak - baseline = "
            f"{(ours - base) / largest:.2f}x the largest .pth), mostly file-backed (reclaimable) pages; "
            f"the naive one holds every mapped tensor in anonymous memory at once."
        )
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
            console.print(f"wrote {args.json}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            console.print(f"kept {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
