"""Media pipeline speed: our 8 frames + 8 audio clips vs a full-decode baseline, and vs the official timings.

Run:  python benchmarks/media.py [--runs 3] [--minutes 10] [--skip-long] [--long-file PATH]

* Example files: every video/image item of the fixtures manifest (default ../shared/fixtures/media), timed
  min/median over --runs warm runs, next to the official demo's medians stored in the manifest (`timing_s`).
* "ours" = ``load_video_and_audio`` (8 frames + 8 audio clips, the audio decoded in a second thread); the notes
  give the two parts timed on their own (``load_video`` / ``load_audio``).
* Generated long video: a --minutes long 1280x720 24 fps H.264 + AAC file written to a temp dir (removed after);
  --long-file reuses such a file instead (it is written there when missing, and kept).
* Baseline ("full decode"): decode every video frame with PyAV (no scaling) + decode the whole audio track,
  resample all of it to 16 kHz and cut the clips (what the official code does for audio).
* Long video vs official: when decord is installed (not a dependency), the official demo's approach is timed in
  the same run: decord VideoReader(224x224).get_batch(8 uniform) + whole-track audio decode and resample.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from videollama.errors import NoAudioError  # noqa: E402
from videollama.media import load_audio, load_image, load_video, load_video_and_audio  # noqa: E402


def timed(fn, runs: int) -> tuple[float, float]:
    """(min, median) seconds of ``runs`` calls after one warm-up call."""
    fn()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts), statistics.median(ts)


def ours(path: Path) -> None:
    load_video_and_audio(path, n_frames=8)  # a missing audio stream comes back as audio_error, not raised


def full_decode(path: Path) -> None:
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        vs.codec_context.thread_type = "AUTO"
        for _ in c.decode(vs):
            pass
    try:
        load_audio(path, full_resample=True)  # whole track decoded and resampled
    except NoAudioError:
        pass


def official_like(path: Path) -> None:
    """The official demo's work, where it can be reproduced here: decord (the official decoder, if installed)
    for 8 uniform frames at 224x224, and the whole audio track decoded and resampled before cutting clips."""
    import decord

    vr = decord.VideoReader(str(path), height=224, width=224)
    n = len(vr)
    vr.get_batch(np.arange(0, n, n / 8).astype(int).tolist()).asnumpy()
    try:
        load_audio(path, full_resample=True)
    except NoAudioError:
        pass


def make_long_video(path: Path, minutes: float, fps: int = 24, size: tuple[int, int] = (1280, 720)) -> None:
    rng = np.random.default_rng(0)
    w, h = size
    base = [np.kron(rng.integers(0, 255, (h // 16, w // 16, 3), dtype=np.uint8), np.ones((16, 16, 1), np.uint8))
            for _ in range(8)]
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=fps)
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    vs.options = {"preset": "ultrafast", "crf": "28"}
    aus = out.add_stream("aac", rate=44100, layout="stereo")
    n = int(minutes * 60 * fps)
    frames = [av.VideoFrame.from_ndarray(np.roll(b, 8 * k, axis=1), format="rgb24") for k, b in enumerate(base)]
    for i in range(n):
        f = frames[(i // 12) % len(frames)]
        f.pts = i
        f.time_base = Fraction(1, fps)
        for p in vs.encode(f):
            out.mux(p)
    for p in vs.encode():
        out.mux(p)
    total = int(minutes * 60 * 44100)
    t = np.arange(1024) / 44100
    for start in range(0, total, 1024):
        tone = (0.2 * np.sin(2 * np.pi * (200 + (start // 44100) % 50 * 10) * (t + start / 44100))).astype(np.float32)
        af = av.AudioFrame.from_ndarray(np.stack([tone, tone * 0.5]), format="fltp", layout="stereo")
        af.sample_rate, af.pts = 44100, start
        for p in aus.encode(af):
            out.mux(p)
    for p in aus.encode():
        out.mux(p)
    out.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", type=Path, default=REPO.parent / "shared" / "fixtures" / "media")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--skip-long", action="store_true")
    ap.add_argument("--long-file", type=Path, default=None,
                    help="reuse (or create and keep) the long test video at this path")
    args = ap.parse_args()

    rows = []
    manifest = args.fixtures / "manifest.json"
    if manifest.exists():
        items = json.loads(manifest.read_text())["items"]
        for name, item in items.items():
            path = (manifest.parent / item["media_file"]).resolve()
            tm = item.get("timing_s", {})
            if item.get("kind") == "image":
                mn, med = timed(lambda: load_image(path), args.runs)
                off = tm.get("image_median")
                rows.append((name, "image", None, mn, med, off, None))
                continue
            mn, med = timed(lambda: ours(path), args.runs)
            v_mn, v_med = timed(lambda: load_video(path, n_frames=8), args.runs)

            def audio():
                try:
                    load_audio(path)
                except NoAudioError:
                    pass

            a_mn, a_med = timed(audio, args.runs)
            base_mn, base_med = timed(lambda: full_decode(path), max(1, args.runs // 2))
            off = (tm.get("video_8frames_median") or 0) + (tm.get("audio_fbank_median") or 0)
            rows.append((name, "video+audio", base_med, mn, med, off or None,
                         f"alone: video {v_med * 1000:.0f} ms (official {tm.get('video_8frames_median', 0) * 1000:.0f}), "
                         f"audio {a_med * 1000:.0f} ms (official {tm.get('audio_fbank_median', 0) * 1000:.0f})"))
    if not args.skip_long:
        tmp = Path(tempfile.mkdtemp(prefix="videollama-bench-"))
        try:
            path = args.long_file or tmp / "long720p.mp4"
            if not path.exists():
                t = time.perf_counter()
                make_long_video(path, args.minutes)
                print(f"generated {args.minutes:g} min 720p H.264+AAC ({path.stat().st_size / 1e6:.0f} MB) "
                      f"in {time.perf_counter() - t:.0f} s", flush=True)
            mn, med = timed(lambda: ours(path), args.runs)
            t = time.perf_counter()
            full_decode(path)
            base = time.perf_counter() - t
            clip = load_video(path)
            _, v_med = timed(lambda: load_video(path), max(1, args.runs // 2))
            _, a_med = timed(lambda: load_audio(path), max(1, args.runs // 2))
            official = None
            try:  # decord is not a project dependency: `pip install -c constraints.txt decord` to compare
                _, official = timed(lambda: official_like(path), max(1, args.runs // 2))
            except ImportError:
                print("decord not installed: no official-pipeline comparison for the long video", flush=True)
            rows.append((f"generated {args.minutes:g} min 720p", "video+audio", base, mn, med, official,
                         f"alone: video {v_med * 1000:.0f} ms, audio {a_med * 1000:.0f} ms; "
                         f"{clip.decoded_frames}/{clip.vlen} frames decoded, {clip.seeks} seeks; "
                         "official = decord + full-track resample, measured in this run"))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"media pipeline timings (ms; {os.cpu_count()} CPUs; ours = 8 frames + 8 audio clips)")
    for col in ("file", "kind", "full decode", "ours min", "ours median", "official median", "x vs full",
                "x vs official", "notes"):
        table.add_column(col)

    def ms(x):
        return "-" if x is None else f"{x * 1000:.0f}"

    for name, kind, base, mn, med, off, note in rows:
        table.add_row(name, kind, ms(base), ms(mn), ms(med), ms(off),
                      "-" if base is None else f"{base / med:.1f}x", "-" if not off else f"{off / med:.1f}x",
                      note or "")
    Console(width=200).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
