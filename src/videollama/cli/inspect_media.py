"""``videollama inspect FILE``: what the media pipeline will see in a file (streams, frames, audio)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    """Register the ``inspect`` subcommand."""
    p = subparsers.add_parser(
        name,
        help="show streams, duration, frame rate, rotation, frame count, sampled frames and audio use of a media file",
    )
    p.add_argument("file", help="video, audio or image file")
    p.add_argument("--frames", type=int, default=8, help="number of frames to sample (default 8, as the demo)")
    p.add_argument("--clips", type=int, default=8, help="number of 2 s audio clips (default 8, as the demo)")
    return p


def _fmt(x: object, unit: str = "") -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.3f}{unit}"
    return f"{x}{unit}"


def run(args: argparse.Namespace) -> int:
    """Print the report; MediaErrors propagate to main() which prints one line and exits 2."""
    from rich.console import Console
    from rich.table import Table

    from videollama.errors import NoAudioError
    from videollama.media import load_audio, probe, timestamp_message, uniform_indices
    from videollama.media.video import index_video

    console = Console()
    info = probe(args.file)
    console.print(f"[bold]{info.path}[/bold]  kind: {info.kind}  container: {info.format}  duration: {_fmt(info.duration, ' s')}")
    if info.kind == "image":
        console.print(f"image {info.width}x{info.height}, PIL mode {info.image_mode} -> RGB, bicubic 224x224")
        return 0

    table = Table(title="streams")
    for col in ("#", "type", "codec", "start", "duration", "details", "header frames"):
        table.add_column(col)
    for s in info.streams:
        if s.type == "video":
            details = f"{s.width}x{s.height} {s.pix_fmt} {_fmt(s.avg_fps)} fps"
        elif s.type == "audio":
            details = f"{s.sample_rate} Hz, {s.channels} ch ({s.layout})"
        else:
            details = ""
        used = " (used)" if s.index in (info.video_stream, info.audio_stream) else ""
        table.add_row(str(s.index), s.type + used, s.codec, _fmt(s.start_time, " s"), _fmt(s.duration, " s"),
                      details, str(s.header_frames))
    console.print(table)

    if info.video_stream is not None:
        console.print(
            f"video: {info.width}x{info.height}, avg frame rate {_fmt(info.fps)} fps, rotation {info.rotation} deg, "
            f"frame count (packets, as decord) {info.frame_count}"
        )
        idx = index_video(args.file)
        indices = uniform_indices(idx.vlen, args.frames)
        times = idx.frame_times()
        ft = Table(title=f"sampled frames (uniform, T={len(indices)})")
        for col in ("#", "frame index", "index / fps (s)", "true time (s)"):
            ft.add_column(col)
        fps = info.fps or 1.0
        for k, i in enumerate(indices):
            ft.add_row(str(k), str(i), str(round(i / fps, 1)), f"{times[i]:.3f}")
        console.print(ft)
        console.print(f"timestamp sentence: {timestamp_message(indices, fps)!r}")
    else:
        console.print("video: none (load_video will refuse this file)")

    try:
        clips = load_audio(args.file, n_clips=args.clips)
        console.print(
            f"audio: used - stream #{clips.stream_index}, {clips.native_sample_rate} Hz, {clips.channels} ch "
            f"(fbank on channel 0), {clips.duration_s:.3f} s at 16 kHz, {len(clips.clip_bounds)} clips "
            f"{[list(b) for b in clips.clip_bounds]}"
        )
    except NoAudioError as exc:
        console.print(f"audio: NOT used - {exc}")
    return 0
