"""Rendering: frames (numpy), sounds (numpy) and the .mp4 (H.264 + AAC, written with PyAV).

Deterministic: every random draw comes from the scene's seeds, the encoder runs single-threaded with fixed
settings, so the same scene gives the same decoded frames and samples (byte-identical files with the same
PyAV / FFmpeg / x264 build; the versions are recorded in manifest.json).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import av
import numpy as np

from videollama.world import vocab as V
from videollama.world.scene import state_at_frame

X264_OPTIONS = {"preset": "veryfast", "crf": "18", "bframes": "0", "g": "48"}
AAC_BITRATE = 64000


# ------------------------------------------------------------------------------------------------ shapes
def shape_mask(shape: str, r: int) -> np.ndarray:
    """Boolean mask (2r+1, 2r+1) of a shape of 'radius' r centred in the box."""
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1].astype(np.float64)
    if shape == "circle":
        return xx**2 + yy**2 <= r * r
    if shape == "square":
        s = r * 0.85
        return (np.abs(xx) <= s) & (np.abs(yy) <= s)
    if shape == "triangle":  # pointing up; base at y = +0.8r, apex at y = -r
        top, base = -r, 0.8 * r
        half = (yy - top) / (base - top) * r
        return (yy >= top) & (yy <= base) & (np.abs(xx) <= half)
    if shape == "cross":
        t = r * 0.33
        return ((np.abs(xx) <= t) & (np.abs(yy) <= r)) | ((np.abs(yy) <= t) & (np.abs(xx) <= r))
    if shape == "star":  # 5 points, inner radius 0.45 r
        ang = np.arctan2(xx, -yy)
        rad = np.hypot(xx, yy)
        k = (ang % (2 * np.pi / 5)) / (2 * np.pi / 5)  # 0..1 within one point sector
        tri = np.abs(k - 0.5) * 2  # 1 at the point, 0 between points
        lim = 0.45 * r + (r - 0.45 * r) * tri
        return rad <= lim
    raise ValueError(f"unknown shape {shape!r}")


def object_masks(scene: dict[str, Any], frame: int, _cache: dict | None = None
                 ) -> Iterator[tuple[dict[str, Any], tuple[slice, slice], np.ndarray]]:
    """Per object on screen in `frame`, in drawing order: (state, (rows, cols) of its box clipped to the frame,
    boolean mask of the shape within that box)."""
    h, w = scene["height"], scene["width"]
    cache = {} if _cache is None else _cache
    for o in state_at_frame(scene, frame):
        r = int(o["radius"])
        key = (o["shape"], r)
        if key not in cache:
            cache[key] = shape_mask(o["shape"], r)
        m = cache[key]
        cx, cy = int(round(o["centre"][0])), int(round(o["centre"][1]))
        x0, y0 = cx - r, cy - r
        xs0, ys0 = max(x0, 0), max(y0, 0)
        xs1, ys1 = min(x0 + 2 * r + 1, w), min(y0 + 2 * r + 1, h)
        yield o, (slice(ys0, ys1), slice(xs0, xs1)), m[ys0 - y0:ys1 - y0, xs0 - x0:xs1 - x0]


def render_frame(scene: dict[str, Any], frame: int, _cache: dict | None = None) -> np.ndarray:
    img = np.empty((scene["height"], scene["width"], 3), dtype=np.uint8)
    img[:] = V.BACKGROUNDS[scene["background"]]
    for o, box, sub in object_masks(scene, frame, _cache):
        img[box][sub] = V.COLOURS[o["colour"]]
    return img


# ------------------------------------------------------------------------------------------------ sounds
def _envelope(n: int, sr: int, ramp_s: float = 0.01) -> np.ndarray:
    k = max(1, min(int(ramp_s * sr), n // 2))
    env = np.ones(n)
    env[:k] = np.linspace(0, 1, k)
    env[n - k:] = np.linspace(1, 0, k)
    return env


def _tone(freq: float, length: float, sr: int, square: bool) -> np.ndarray:
    t = np.arange(int(round(length * sr))) / sr
    x = np.sin(2 * np.pi * freq * t)
    if square:
        x = np.sign(x) * 0.6
    return x * _envelope(len(t), sr)


def synth_speech(word: str, sr: int = V.SAMPLE_RATE) -> np.ndarray:
    """A spoken word through espeak-ng (resampled to `sr`, trimmed, peak 0.8); RuntimeError without espeak-ng."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng), or use --no-speech")
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "w.wav"
        subprocess.run([exe, "-v", "en-us", "-s", "150", "-w", str(out), word], check=True, capture_output=True)
        with wave.open(str(out)) as wf:
            src_sr = wf.getframerate()
            x = np.frombuffer(wf.readframes(wf.getnframes()), dtype=np.int16).astype(np.float64) / 32768.0
    idx = np.nonzero(np.abs(x) > 0.02)[0]
    if len(idx):
        x = x[idx[0]:idx[-1] + 1]
    n = int(len(x) * sr / src_sr)
    y = np.interp(np.arange(n) * src_sr / sr, np.arange(len(x)), x)
    return y / max(np.abs(y).max(), 1e-6) * 0.8


def render_audio(scene: dict[str, Any], speech: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Mono float32 track of the scene's duration at 16 kHz."""
    sr = scene["sample_rate"]
    n = int(scene["audio_samples"])
    out = np.zeros(n)
    for e in scene["audio_events"]:
        rng = np.random.default_rng(e["seed"])
        if e["type"] == "tone":
            x = _tone(V.TONE_HZ[e["pitch"]], e["length"], sr, e["timbre"] == "square") * 0.5
        elif e["type"] == "noise":
            m = int(round(e["length"] * sr))
            x = rng.uniform(-1, 1, m) * 0.5 * _envelope(m, sr)
        elif e["type"] == "beeps":
            one = _tone(V.BEEP_HZ, V.BEEP_ON_S, sr, False) * 0.5
            gap = np.zeros(int(round(V.BEEP_OFF_S * sr)))
            x = np.concatenate([np.concatenate([one, gap]) if k < e["count"] - 1 else one for k in range(e["count"])])
        elif e["type"] == "speech":
            x = (speech or {})[e["word"]]
        else:
            raise ValueError(e["type"])
        s = int(round(e["start"] * sr))
        x = x[: max(0, n - s)]
        out[s:s + len(x)] += x
    return np.clip(out, -1, 1).astype(np.float32)


# ------------------------------------------------------------------------------------------------ encoding
def write_mp4(path: str | Path, scene: dict[str, Any], audio: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w", format="mp4", options={"fflags": "+bitexact"}) as out:
        vs = out.add_stream("libx264", rate=Fraction(scene["fps"]), options=dict(X264_OPTIONS))
        vs.width, vs.height, vs.pix_fmt = scene["width"], scene["height"], "yuv420p"
        vs.codec_context.thread_count = 1
        as_ = out.add_stream("aac", rate=V.SAMPLE_RATE, layout="mono")
        as_.bit_rate = AAC_BITRATE
        as_.codec_context.thread_count = 1
        cache: dict = {}
        for i in range(scene["n_frames"]):
            frame = av.VideoFrame.from_ndarray(render_frame(scene, i, cache), format="rgb24")
            frame.pts = i
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        chunk = 1024
        for s in range(0, len(audio), chunk):
            part = audio[s:s + chunk]
            af = av.AudioFrame.from_ndarray(part[None, :], format="fltp", layout="mono")
            af.sample_rate = V.SAMPLE_RATE
            af.pts = s
            for p in as_.encode(af):
                out.mux(p)
        for p in as_.encode():
            out.mux(p)
    tmp.replace(path)
