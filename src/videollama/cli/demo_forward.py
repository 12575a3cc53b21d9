"""`videollama demo-forward`: one full forward pass over a video, printing what each stage did.

Without `--model` it builds (once, into the cache folder) a tiny random model from the `tiny` preset, so it
runs offline on any machine; its "answer" is therefore noise, but every stage is the real code path.
"""

from __future__ import annotations

import argparse
import os
import time
from importlib import resources
from pathlib import Path


def default_cache() -> Path:
    return Path(os.environ.get("VIDEOLLAMA_CACHE", Path.home() / ".cache" / "videollama"))


def example_video() -> Path:
    return Path(str(resources.files("videollama") / "assets" / "example.mp4"))


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="run one forward pass on a video and print every stage (smoke test)",
                       description=__doc__)
    p.add_argument("video", nargs="?", type=Path, default=None, help="video file (default: the shipped example)")
    p.add_argument("--model", type=Path, default=None, help="model folder (default: a tiny random model)")
    p.add_argument("--question", default="What is happening in the video?")
    p.add_argument("--frames", type=int, default=8, help="frames to sample (default 8)")
    p.add_argument("--no-audio", action="store_true", help="skip the audio branch")
    p.add_argument("--new-tokens", type=int, default=8, help="greedy tokens to generate (default 8)")
    return p


def run(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console
    from rich.table import Table

    from videollama.checkpoint.folder import LLM_DIR
    from videollama.errors import NoAudioError
    from videollama.inference.generate import generate_ids
    from videollama.media import load_audio, load_video
    from videollama.model.videollama import VideoLLaMA
    from videollama.text import build_prompt_segments, get_template, load_tokenizer, postprocess_answer, stop_sequences
    from videollama.tiny import make_tiny_model

    console = Console()
    table = Table(title="videollama forward pass")
    for col in ("stage", "output", "ms"):
        table.add_column(col)

    def stage(name: str, fn, describe=None):
        t0 = time.perf_counter()
        value = fn()
        ms = (time.perf_counter() - t0) * 1000
        text = describe(value) if describe else str(tuple(value.shape))
        table.add_row(name, text, f"{ms:.0f}")
        return value

    model_dir = args.model
    if model_dir is None:
        model_dir = default_cache() / "tiny-random-v1"
        if not (model_dir / "config.json").exists():
            console.print(f"building a tiny random model (preset 'tiny', seed 0) in {model_dir}")
            make_tiny_model(model_dir, "tiny", seed=0)
    video_path = args.video or example_video()
    torch.manual_seed(0)
    model = stage("load model", lambda: VideoLLaMA.from_pretrained(model_dir),
                  lambda m: f"{sum(p.numel() for p in m.parameters()) / 1e6:.2f}M params")
    tokenizer = load_tokenizer(Path(model_dir) / LLM_DIR)
    clip = stage("decode + sample frames", lambda: load_video(video_path, n_frames=args.frames),
                 lambda c: f"{tuple(c.tensor.shape)} frames {c.indices}")
    audio = None
    if not args.no_audio and model.audio_encoder is not None:
        try:
            audio = stage("decode audio -> log-mel clips", lambda: load_audio(video_path).tensor)
        except NoAudioError as exc:
            console.print(f"[yellow]notice:[/] audio branch skipped: {exc}")
    with torch.inference_mode():
        video_embeds = stage("vision branch (ViT, Q-Formers, proj)", lambda: model.encode_video(clip.tensor).llm_embeds)
        media = {"video": video_embeds}
        if audio is not None:
            media["audio"] = stage("audio branch (ImageBind, Q-Former, proj)", lambda: model.encode_audio(audio).llm_embeds)
        conv = get_template(model.config.template.name)
        order = conv.upload_video(clip.message, with_audio=audio is not None)
        conv.ask(args.question)
        conv.start_answer()
        segments = build_prompt_segments(conv, tokenizer, num_media=len(order))
        context = stage("prompt + media -> inputs_embeds", lambda: model.context_embeds(
            [torch.tensor([ids]) for ids in segments.ids], [media[name] for name in order]))
        logits = stage("LLM prefill (logits)", lambda: model.llm(inputs_embeds=context).logits)
        new_ids = stage(f"greedy decode ({args.new_tokens} tokens)", lambda: generate_ids(
            model.llm, context, stop_sequences(conv, tokenizer), max_new_tokens=args.new_tokens, do_sample=False))
    console.print(table)
    say = lambda text: console.print(text, markup=False, highlight=False)  # noqa: E731 - prompts contain '[/INST]'
    say(f"video: {video_path} - {clip.message.strip()}")
    say(f"prompt ({segments.text_length()} text tokens, media order {order}):\n{conv.get_prompt()!r}")
    say(f"next-token argmax: {int(logits[0, -1].argmax())}; generated ids: {new_ids[0].tolist()}")
    say(f"decoded: {postprocess_answer(new_ids[0].tolist(), tokenizer, conv)!r}"
        + ("  (random tiny model: noise is expected)" if args.model is None else ""))
    return 0
