"""Video frames exactly as the official demo gets them from decord 0.6.0, decoded with PyAV.

* Frame count: decord counts the packets of the best video stream (one demux pass, no decode).
* Frame ``i`` is the ``i``-th frame in presentation order.
* Pixels: FFmpeg filter graph ``[transpose,]scale=W:H:flags=bilinear`` to rgb24, the same swscale path decord uses
  (PyAV's ``VideoFrame.reformat`` uses different swscale settings and is not bit-exact).
* Access: keyframe seek + decode forward; skipped frames are never converted, and only the sampled frames are kept,
  so memory does not grow with the length of the video. For H.264/HEVC, packets of frames we do not keep are sent
  with ``skip_frame=NONREF`` so the decoder drops the non-reference ones (B-frames) without decoding them; the
  reference frames are all decoded, so the kept frames are bit-identical (tests/media/test_speedups.py).
"""

from __future__ import annotations

import bisect
import logging
import os
import random
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator, Sequence

import av
import av.filter
import numpy as np
import torch

from videollama.errors import CorruptMediaError, UnsupportedMediaError
from videollama.media import sampling as _sampling
from videollama.media._container import check_path, decode_error, open_container
from videollama.media.normalize import normalize_frames

log = logging.getLogger(__name__)

DEFAULT_SIZE: tuple[int, int] = (224, 224)  # (height, width)
_IMAGE_DEMUXERS = ("image2", "_pipe")
# Decoders whose ``skip_frame=NONREF`` drops only pictures that no other picture predicts from (checked
# bit-exact against a full decode: tests/media/test_speedups.py::test_nonref_skip_is_exact).
_NONREF_SKIP_CODECS = frozenset({"h264", "hevc"})


@dataclass
class VideoIndex:
    """What one demux pass over the best video stream tells us (decord's index)."""

    stream_index: int
    vlen: int  # number of packets = decord frame count
    pts_sorted: np.ndarray  # int64 presentation timestamps in presentation order (empty when pts are missing)
    key_ranks: list[int]  # presentation rank of each keyframe packet, sorted
    time_base: Fraction
    avg_fps: float  # stream avg_frame_rate (what decord's get_avg_fps returns)

    @property
    def has_pts(self) -> bool:
        return len(self.pts_sorted) == self.vlen and self.vlen > 0

    def frame_times(self) -> np.ndarray:
        """Presentation time in seconds of every frame, relative to the first one."""
        if self.has_pts:
            return (self.pts_sorted - self.pts_sorted[0]).astype(np.float64) * float(self.time_base)
        fps = self.avg_fps or 25.0
        return np.arange(self.vlen, dtype=np.float64) / fps


@dataclass
class VideoClip:
    """Sampled frames of one video, and everything the prompt needs about them."""

    path: str
    frames: np.ndarray  # uint8 (T, H, W, 3), RGB, as decord returns them
    tensor: torch.Tensor  # float32 (1, 3, T, H, W), CLIP-normalised
    indices: list[int]  # sampled frame indices (presentation order numbering)
    timestamps: list[float]  # i / fps for each index (what the official sentence uses)
    pts_seconds: list[float]  # true presentation time of each sampled frame, relative to the first frame
    fps: float  # stream average frame rate
    vlen: int  # decord frame count
    rotation: int  # clockwise degrees applied before scaling (0, 90, 180, 270)
    message: str  # official timestamp sentence (trailing space)
    decoded_frames: int = 0  # frames the decoder produced (diagnostics: shows that we did not decode everything)
    seeks: int = 0
    extra: dict = field(default_factory=dict)


def best_video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    """FFmpeg's best video stream (av_find_best_stream, as decord), or UnsupportedMediaError."""
    if not container.streams.video:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams"
        raise UnsupportedMediaError(f"{path}: no video stream (file has {kinds})")
    try:
        stream = container.streams.best("video")
    except Exception:  # pragma: no cover - PyAV raises only for odd files
        stream = None
    return stream if stream is not None else container.streams.video[0]


def is_image_container(container: av.container.InputContainer) -> bool:
    """True for FFmpeg's still-image demuxers (jpg/png/... opened as a one-frame 'video')."""
    name = container.format.name or ""
    return any(tag in name for tag in _IMAGE_DEMUXERS)


def _discard_others(container: av.container.InputContainer, keep: int) -> None:
    for s in container.streams:
        if s.index != keep:
            s.discard = type(s.discard).all  # skip other streams' packets while demuxing


def index_video(path: str | os.PathLike[str]) -> VideoIndex:
    """Demux the best video stream once (no decoding) and index its packets like decord does."""
    p = check_path(path)
    with open_container(p) as container:
        if is_image_container(container):
            raise UnsupportedMediaError(f"{p}: is a still image, not a video (use load_image)")
        stream = best_video_stream(container, p)
        _discard_others(container, stream.index)
        pts: list[int] = []
        keys: list[int] = []
        missing_pts = False
        try:
            for packet in container.demux(stream):
                if packet.size == 0 and packet.pts is None and packet.dts is None:
                    continue  # PyAV's end-of-stream flush packet, not a real packet
                if packet.pts is None:
                    missing_pts = True
                if packet.is_keyframe:
                    keys.append(len(pts))
                pts.append(packet.pts if packet.pts is not None else -1)
        except av.error.FFmpegError as exc:
            if not pts:
                raise decode_error(p, "video", exc) from exc
            log.warning("%s: demux stopped early (%s); using the %d packets read", p, exc, len(pts))
        rate = stream.average_rate
        avg_fps = float(rate) if rate else 0.0
        tb = Fraction(stream.time_base) if stream.time_base else Fraction(1, 1)
        vlen = len(pts)
        if missing_pts or vlen == 0:
            return VideoIndex(stream.index, vlen, np.zeros(0, np.int64), [], tb, avg_fps)
        pts_arr = np.asarray(pts, dtype=np.int64)
        order = np.argsort(pts_arr, kind="stable")
        rank = np.empty(vlen, dtype=np.int64)
        rank[order] = np.arange(vlen)
        key_ranks = sorted(int(rank[k]) for k in keys)
        return VideoIndex(stream.index, vlen, pts_arr[order], key_ranks, tb, avg_fps)


def _rotation_cw(frame: av.VideoFrame) -> int:
    """Clockwise rotation decord applies: ``-display_rotation mod 360``, only 90/180/270 count."""
    try:
        ccw = frame.rotation or 0
    except Exception:  # pragma: no cover
        ccw = 0
    theta = int(round(-float(ccw))) % 360
    return theta if theta in (90, 180, 270) else 0


class _Scaler:
    """``[transpose,]scale=W:H:flags=bilinear,format=rgb24`` graph, rebuilt when the input geometry changes."""

    def __init__(self, size: tuple[int, int]):
        self.height, self.width = size
        self._key: tuple | None = None
        self._graph: av.filter.Graph | None = None

    def _build(self, frame: av.VideoFrame, rotation: int) -> None:
        g = av.filter.Graph()
        src = g.add_buffer(
            width=frame.width, height=frame.height, format=frame.format,
            time_base=frame.time_base or Fraction(1, 1000),
        )
        chain = [src]
        # Same filters decord 0.6.0 puts in front of the scale for a rotation tag.
        transposes = {90: ["clock"], 180: ["clock", "clock"], 270: ["cclock"]}.get(rotation, [])
        for direction in transposes:
            chain.append(g.add("transpose", f"dir={direction}"))
        chain.append(g.add("scale", f"w={self.width}:h={self.height}:flags=bilinear"))
        chain.append(g.add("format", "pix_fmts=rgb24"))
        chain.append(g.add("buffersink"))
        for a, b in zip(chain, chain[1:]):
            a.link_to(b)
        g.configure()
        self._graph = g

    def __call__(self, frame: av.VideoFrame, rotation: int) -> np.ndarray:
        key = (frame.width, frame.height, frame.format.name, rotation)
        if key != self._key:
            self._build(frame, rotation)
            self._key = key
        assert self._graph is not None
        frame.pts = None  # the graph only scales; timestamps are irrelevant (and may be out of order after seeks)
        self._graph.push(frame)
        out = self._graph.pull()
        return out.to_ndarray()


class _Reader:
    """Forward decoder over one stream that can jump to a keyframe."""

    def __init__(self, path: Path, stream_index: int, threads: int):
        self.path = path
        self.container = open_container(path)
        self.stream = self.container.streams[stream_index]
        _discard_others(self.container, stream_index)
        cc = self.stream.codec_context
        cc.thread_type = "AUTO"
        cc.thread_count = threads
        self.decoded = 0
        self.seeks = 0

    def close(self) -> None:
        self.container.close()

    def seek(self, ts: int) -> None:
        try:
            self.container.seek(ts, stream=self.stream, backward=True, any_frame=False)
        except av.error.FFmpegError as exc:
            raise decode_error(self.path, "video", exc) from exc
        self.stream.codec_context.flush_buffers()
        self.seeks += 1

    def frames(self, needed: Callable[[av.Packet], bool] | None = None) -> Iterator[av.VideoFrame]:
        """Decoded frames from the current position. With ``needed``, packets for which it returns False are
        decoded with ``skip_frame=NONREF``: the decoder drops them when no other frame references them (their
        pictures are never output, every reference picture is still decoded, so kept frames are unchanged)."""
        cc = self.stream.codec_context
        skipping = False
        if needed is not None:
            cc.skip_frame = "DEFAULT"
        try:
            for packet in self.container.demux(self.stream):
                if needed is not None:
                    skip = not needed(packet)
                    if skip != skipping:
                        cc.skip_frame = "NONREF" if skip else "DEFAULT"
                        skipping = skip
                try:
                    decoded = packet.decode()
                except av.error.InvalidDataError as exc:  # one bad packet: keep going, like FFmpeg does
                    log.debug("%s: skipping undecodable video packet (%s)", self.path, exc)
                    continue
                for frame in decoded:
                    self.decoded += 1
                    yield frame
        except av.error.FFmpegError as exc:
            raise decode_error(self.path, "video", exc) from exc


def read_frames(
    path: str | os.PathLike[str],
    indices: Sequence[int],
    index: VideoIndex | None = None,
    size: tuple[int, int] = DEFAULT_SIZE,
    threads: int = 0,
    allow_seek: bool = True,
    skip_nonref: bool = True,
) -> tuple[np.ndarray, int, dict]:
    """Decode the frames at ``indices`` (presentation-order numbers) scaled to ``size``; uint8 ``(T, H, W, 3)``.

    Returns ``(frames, rotation, stats)``. Seeks to the keyframe before a target when the frames in between
    would otherwise have to be decoded; otherwise decodes forward. Skipped frames are not converted, and for
    H.264/HEVC the non-reference ones among them are not even decoded (``skip_nonref``).
    """
    p = check_path(path)
    idx = index if index is not None else index_video(p)
    wanted = sorted(set(int(i) for i in indices))
    if any(i < 0 or i >= idx.vlen for i in wanted):
        raise ValueError(f"{p}: frame index out of range 0..{idx.vlen - 1}: {wanted}")
    if not wanted:
        return np.zeros((0, size[0], size[1], 3), np.uint8), 0, {"decoded": 0, "seeks": 0}
    got, rotation, stats = _decode_targets(p, idx, wanted, size, threads, allow_seek and idx.has_pts, skip_nonref)
    missing = [t for t in wanted if t not in got]
    if missing:
        raise CorruptMediaError(
            f"{p}: video stream ends early: frame(s) {missing[:5]} of {idx.vlen} could not be decoded"
        )
    frames = np.stack([got[int(i)] for i in indices])
    return frames, rotation, stats


def _decode_targets(
    p: Path, idx: VideoIndex, wanted: list[int], size: tuple[int, int], threads: int, seek: bool,
    skip_nonref: bool = True,
) -> tuple[dict[int, np.ndarray], int, dict]:
    rank_of = {int(v): r for r, v in enumerate(idx.pts_sorted)} if idx.has_pts else {}
    wanted_set = set(wanted)
    got: dict[int, np.ndarray] = {}
    scaler = _Scaler(size)
    rotation = 0
    reader = _Reader(p, idx.stream_index, threads)

    def rank(frame: av.VideoFrame, pos: int) -> int:
        return rank_of.get(frame.pts, pos + 1) if frame.pts is not None else pos + 1

    def needed(packet: av.Packet) -> bool:
        r = rank_of.get(packet.pts) if packet.pts is not None else None
        return r is None or (r in wanted_set and r not in got)

    # Non-reference frames we do not keep are dropped by the decoder (codecs whose NONREF skip only drops
    # pictures nothing else predicts from; needs packet pts to know which packet holds which frame).
    skip_nonref = (
        skip_nonref
        and idx.has_pts
        and len(rank_of) == idx.vlen  # every packet pts distinct: a packet's pts names its frame
        and reader.stream.codec_context.name in _NONREF_SKIP_CODECS
    )
    frames_of = (lambda: reader.frames(needed)) if skip_nonref else (lambda: reader.frames())

    try:
        gen: Iterator[av.VideoFrame] | None = None
        pending: av.VideoFrame | None = None  # first frame after a seek, already pulled
        pos = -1  # presentation rank of the last frame decoded
        for t in wanted:
            if t in got:
                continue
            k = bisect.bisect_right(idx.key_ranks, t) - 1
            if seek and k >= 0 and idx.key_ranks[k] > pos + 1:
                # Jump to the keyframe before t instead of decoding the frames in between. The seek goes by the
                # keyframe's pts (exact on mp4/mkv); if it lands after t, step back one keyframe at a time.
                while True:
                    if k < 0:
                        reader.close()
                        reader = _Reader(p, idx.stream_index, threads)
                        gen, pending, pos = frames_of(), None, -1
                        break
                    kf = idx.key_ranks[k]
                    reader.seek(int(idx.pts_sorted[kf]))
                    gen = frames_of()
                    pending = next(gen, None)
                    if pending is not None and rank(pending, kf - 1) <= t:
                        pos = kf - 1
                        break
                    k -= 1
            elif gen is None:
                gen = frames_of()
            assert gen is not None
            while True:
                if pending is not None:
                    frame, pending = pending, None
                else:
                    frame = next(gen, None)
                    if frame is None:
                        break  # end of stream
                r = rank(frame, pos)
                pos = r
                if r in wanted_set and r not in got:
                    rotation = _rotation_cw(frame)
                    got[r] = scaler(frame, rotation)
                if r >= t:
                    break
        return got, rotation, {"decoded": reader.decoded, "seeks": reader.seeks}
    finally:
        reader.close()


def sample_indices(
    index: VideoIndex,
    n_frames: int | None,
    sampling: str,
    *,
    fps: float | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
    rng: random.Random | int | None = None,
) -> list[int]:
    """Frame indices for a sampling policy (see :mod:`videollama.media.sampling`)."""
    vlen = index.vlen
    if sampling == "uniform":
        return _sampling.uniform_indices(vlen, 8 if n_frames is None else n_frames)
    if sampling == "random":
        return _sampling.random_indices(vlen, 8 if n_frames is None else n_frames, rng)
    if sampling == "headtail":
        return _sampling.headtail_indices(vlen, 8 if n_frames is None else n_frames, rng)
    if sampling == "fps":
        if fps is None:
            raise ValueError("sampling='fps' needs fps=<frames per second>")
        return _sampling.fps_indices(index.frame_times(), fps, n_frames)
    if sampling == "range":
        return _sampling.range_indices(index.frame_times(), start_s, end_s, 8 if n_frames is None else n_frames)
    raise ValueError(f"unknown sampling {sampling!r}; choose from {', '.join(_sampling.SAMPLING_POLICIES)}")


def load_video(
    path: str | os.PathLike[str],
    n_frames: int | None = 8,
    sampling: str = "uniform",
    *,
    fps: float | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
    seed: random.Random | int | None = None,
    size: tuple[int, int] = DEFAULT_SIZE,
    threads: int = 0,
) -> VideoClip:
    """Sample frames of ``path`` as the official demo does (decord-exact) and normalise them for the ViT.

    ``sampling``: ``"uniform"`` (official default), ``"random"`` / ``"headtail"`` (training; ``seed``), ``"fps"``
    (``fps=`` frames per second, ``n_frames`` caps the count; None = no cap) or ``"range"`` (uniform within
    ``start_s``..``end_s`` seconds). ``T = min(n_frames, vlen)``; nothing is padded.
    """
    p = check_path(path)
    idx = index_video(p)
    if idx.vlen == 0:
        raise CorruptMediaError(f"{p}: video stream has no frames")
    indices = sample_indices(idx, n_frames, sampling, fps=fps, start_s=start_s, end_s=end_s, rng=seed)
    if not indices:
        raise ValueError(f"{p}: sampling {sampling!r} selected no frames")
    frames, rotation, stats = read_frames(p, indices, idx, size=size, threads=threads)
    times = idx.frame_times()
    avg_fps = idx.avg_fps
    msg_fps = avg_fps if avg_fps > 0 else 1.0  # decord would divide by zero here; keep the sentence defined
    return VideoClip(
        path=str(p),
        frames=frames,
        tensor=normalize_frames(frames).unsqueeze(0),
        indices=[int(i) for i in indices],
        timestamps=[int(i) / msg_fps for i in indices],
        pts_seconds=[float(times[i]) for i in indices],
        fps=avg_fps,
        vlen=idx.vlen,
        rotation=rotation,
        message=_sampling.timestamp_message(indices, msg_fps),
        decoded_frames=stats["decoded"],
        seeks=stats["seeks"],
    )
