"""Audio clips for the ImageBind audio encoder, as the official demo computes them.

Pipeline (fixtures/media/README.md): decode the best audio stream of the file with all its channels to float32
planar (integer PCM scaled by 2^-15 / 2^-31, as FFmpeg's ``aformat=fltp``), no trimming and no start offset;
resample to 16 kHz (windowed sinc, :mod:`.resample`); cut ``n_clips`` clips of 2 s with pytorchvideo's
ConstantClipsPerVideoSampler; per clip subtract its mean **in place on the shared waveform** (overlapping clips
see already-shifted samples), Kaldi fbank of channel 0, pad/crop to 204 frames, normalise ``(x + 4.268) / 9.138``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from videollama.errors import NoAudioError
from videollama.media._container import check_path, decode_error, open_container
from videollama.media.fbank import fbank
from videollama.media.resample import output_length, resample, resample_range

log = logging.getLogger(__name__)

TARGET_SR = 16000
CLIP_DURATION = 2
N_CLIPS = 8
TARGET_FRAMES = 204
FBANK_MEAN = -4.268
FBANK_STD = 9.138
MIN_SAMPLES = int(TARGET_SR * 0.025)  # one Kaldi window


@dataclass
class AudioClips:
    """Normalised fbank clips of one file and how they were cut."""

    path: str
    tensor: torch.Tensor  # float32 (1, n_clips, 1, 128, 204)
    clip_bounds: list[tuple[int, int]]  # [start, end) sample at 16 kHz, before the cut at the end of the data
    clip_times: list[tuple[Fraction, Fraction]]  # exact clip start/end in seconds
    native_sample_rate: int
    channels: int
    n_samples_native: int
    n_samples_16k: int
    stream_index: int

    @property
    def duration_s(self) -> float:
        return self.n_samples_16k / TARGET_SR


@contextlib.contextmanager
def _torch_threads(n: int):
    """Run small-tensor work on ``n`` intra-op threads: the clips are ~80k-element tensors, where waking a second
    thread costs more than the work (measured 6 ms vs 0.3 ms per op on the 2-core target machine)."""
    old = torch.get_num_threads()
    if n == old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _to_float32_planar(frame: av.AudioFrame) -> np.ndarray:
    """``(channels, samples)`` float32 with FFmpeg's sample-format conversion rules (exact power-of-two scales)."""
    arr = frame.to_ndarray()
    fmt = frame.format
    channels = len(frame.layout.channels)
    if not fmt.is_planar:
        arr = arr.reshape(-1, channels).T
    kind = fmt.name.rstrip("p")
    if kind == "flt":
        return np.ascontiguousarray(arr, dtype=np.float32)
    if kind == "dbl":
        return arr.astype(np.float32)
    if kind == "s16":
        return arr.astype(np.float32) * np.float32(1.0 / (1 << 15))
    if kind == "s32":
        return arr.astype(np.float32) * np.float32(1.0 / (1 << 31))
    if kind == "s64":
        return arr.astype(np.float32) * np.float32(1.0 / (1 << 63))
    if kind == "u8":
        return (arr.astype(np.int16) - 128).astype(np.float32) * np.float32(1.0 / (1 << 7))
    raise ValueError(f"unsupported sample format {fmt.name}")


def decode_audio(path: str | os.PathLike[str]) -> tuple[np.ndarray, int, int]:
    """Decode the whole best audio stream: ``(waveform float32 (C, N), sample_rate, stream_index)``.

    Every packet is decoded (the first AAC packet included), all channels are kept, the start offset is ignored.
    Raises NoAudioError when there is no audio stream or it holds no samples.
    """
    p = check_path(path)
    with open_container(p) as container:
        if not container.streams.audio:
            raise NoAudioError(f"{p}: no audio stream in the file; audio is skipped")
        stream = container.streams.best("audio") or container.streams.audio[0]
        for s in container.streams:
            if s.index != stream.index:
                s.discard = type(s.discard).all
        chunks: list[np.ndarray] = []
        rate = stream.codec_context.sample_rate or stream.rate
        cc = stream.codec_context
        # Decoded frames are appended to an AudioFifo (a C-side copy) and converted to numpy once per run of
        # frames with the same format/layout/rate, instead of once per frame (~25k frames for 10 min of AAC).
        fifo = av.AudioFifo()

        def drain() -> None:
            nonlocal fifo
            if fifo.samples:
                chunk = _to_float32_planar(fifo.read())
                if chunks and chunk.shape[0] != chunks[0].shape[0]:
                    raise NoAudioError(f"{p}: audio channel count changes mid-stream; audio is skipped")
                chunks.append(chunk)
            fifo = av.AudioFifo()

        try:
            for packet in container.demux(stream):
                try:
                    frames = cc.decode(packet)
                except av.error.InvalidDataError as exc:
                    log.debug("%s: skipping undecodable audio packet (%s)", p, exc)
                    continue
                for frame in frames:
                    if not frame.samples:
                        continue
                    rate = frame.sample_rate or rate
                    frame.pts = None  # the fifo only concatenates; it would reject timestamp gaps
                    try:
                        fifo.write(frame)
                    except ValueError:  # format, layout or rate changed: start a new run
                        drain()
                        fifo.write(frame)
            drain()
        except av.error.FFmpegError as exc:
            raise decode_error(p, "audio", exc) from exc
        if not chunks:
            raise NoAudioError(f"{p}: audio stream #{stream.index} has no decodable samples; audio is skipped")
        return np.concatenate(chunks, axis=1), int(rate), stream.index


def load_waveform_16k(path: str | os.PathLike[str]) -> torch.Tensor:
    """The whole track at 16 kHz ``(C, N)`` float32 (official: torchaudio.load + full resample)."""
    wave, sr, _ = decode_audio(path)
    return resample(torch.from_numpy(wave), sr, TARGET_SR)


def clip_timepoints(
    n_samples: int, n_clips: int = N_CLIPS, clip_duration: int = CLIP_DURATION, sample_rate: int = TARGET_SR
) -> list[tuple[Fraction, Fraction]]:
    """pytorchvideo ConstantClipsPerVideoSampler on ``duration = n_samples / sample_rate`` (a float).

    Clip ``k`` starts at ``k * max(duration - clip_duration, 0) / n_clips`` in exact fractions of the float
    (``duration - clip_duration`` is a float subtraction, as in pytorchvideo). NB: the divisor is ``n_clips``
    (checked against every reference clip time), so the last clip ends before the end of the audio.
    """
    duration = n_samples / sample_rate
    max_start = Fraction(max(duration - clip_duration, 0))
    step = Fraction(max_start, n_clips)
    return [(step * k, step * k + clip_duration) for k in range(n_clips)]


def clip_sample_bounds(times: list[tuple[Fraction, Fraction]], sample_rate: int = TARGET_SR) -> list[tuple[int, int]]:
    """``[int(start * sr), int(end * sr))`` per clip, before the cut at the end of the data."""
    return [(int(s * sample_rate), int(e * sample_rate)) for s, e in times]


def _normalise_fbank(clip: torch.Tensor, target_frames: int, where: str) -> torch.Tensor:
    """Kaldi fbank of channel 0 -> ``(1, 128, target_frames)`` normalised."""
    try:
        feats = fbank(clip[0].contiguous())
    except ValueError as exc:
        raise NoAudioError(f"{where}: audio too short for one 25 ms analysis window ({exc}); audio is skipped") from exc
    feats = feats.transpose(0, 1)  # (128, frames)
    n = feats.shape[1]
    gap = target_frames - n
    if abs(gap) / n > 0.2:
        log.warning("%s: audio clip has %d fbank frames, padded/cut to %d", where, n, target_frames)
    if gap > 0:
        feats = torch.nn.functional.pad(feats, (0, gap))
    elif gap < 0:
        feats = feats[:, :target_frames]
    mean = torch.tensor(FBANK_MEAN, dtype=torch.float32)
    std = torch.tensor(FBANK_STD, dtype=torch.float32)
    return ((feats - mean) / std).unsqueeze(0)


def clips_from_waveform(
    buffers: list[tuple[int, torch.Tensor]], bounds: list[tuple[int, int]], n_total: int, where: str
) -> torch.Tensor:
    """``(n_clips, 1, 128, 204)`` from 16 kHz buffers ``[(offset, (C, L)), ...]`` covering every clip.

    Reproduces the official in-place edit: each clip is a *view* of its buffer and ``clip -= clip.mean()``
    (mean over all channels) shifts the shared samples that later, overlapping clips read.
    """
    out = []
    for s, e in bounds:
        e = min(e, n_total)
        off, buf = next((o, b) for o, b in buffers if o <= s and e <= o + b.shape[1])
        clip = buf[:, s - off : e - off]
        if clip.shape[1] < MIN_SAMPLES:
            raise NoAudioError(
                f"{where}: audio has {clip.shape[1]} samples at 16 kHz, shorter than one 25 ms window; audio is skipped"
            )
        clip -= clip.mean()
        out.append(_normalise_fbank(clip, TARGET_FRAMES, where))
    return torch.stack(out, dim=0)


def _merge(bounds: list[tuple[int, int]], n_total: int) -> list[tuple[int, int]]:
    spans: list[list[int]] = []
    for s, e in sorted((s, min(e, n_total)) for s, e in bounds):
        if spans and s <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], e)
        else:
            spans.append([s, e])
    return [(s, e) for s, e in spans]


def load_audio(
    path: str | os.PathLike[str],
    n_clips: int = N_CLIPS,
    *,
    clip_duration: int = CLIP_DURATION,
    full_resample: bool = False,
) -> AudioClips:
    """Audio of ``path`` (any container, or a wav/mp3/flac/ogg file) as ImageBind fbank clips ``(1, n, 1, 128, 204)``.

    The whole track is decoded (needed for its exact length). By default only the 16 kHz samples the clips use
    are resampled (identical to the full resample up to ~1e-7); ``full_resample=True`` resamples everything,
    exactly like the official code. Raises NoAudioError (no audio stream, or shorter than one 25 ms window).
    """
    p = check_path(path)
    wave, sr, stream_index = decode_audio(p)
    native = torch.from_numpy(wave)
    n16 = output_length(native.shape[1], sr, TARGET_SR)
    if n16 < MIN_SAMPLES:
        raise NoAudioError(
            f"{p}: audio is {n16 / TARGET_SR * 1000:.1f} ms long, shorter than one 25 ms window; audio is skipped"
        )
    times = clip_timepoints(n16, n_clips, clip_duration)
    bounds = clip_sample_bounds(times)
    if full_resample or sr == TARGET_SR:
        buffers = [(0, resample(native, sr, TARGET_SR).clone())]
    else:
        buffers = [(s, resample_range(native, sr, TARGET_SR, s, e)) for s, e in _merge(bounds, n16)]
    with _torch_threads(1):
        tensor = clips_from_waveform(buffers, bounds, n16, str(p)).unsqueeze(0)
    return AudioClips(
        path=str(p),
        tensor=tensor,
        clip_bounds=bounds,
        clip_times=times,
        native_sample_rate=sr,
        channels=wave.shape[0],
        n_samples_native=wave.shape[1],
        n_samples_16k=n16,
        stream_index=stream_index,
    )
