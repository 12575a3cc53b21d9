"""What a media file contains, without decoding more than one video frame."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import av

from videollama.media._container import check_path, open_container
from videollama.media.image import is_image
from videollama.media.video import _rotation_cw, best_video_stream, index_video, is_image_container


@dataclass
class StreamInfo:
    """One stream of a container."""

    index: int
    type: str  # 'video', 'audio', 'subtitle', 'data', ...
    codec: str
    start_time: float | None = None
    duration: float | None = None
    width: int | None = None
    height: int | None = None
    pix_fmt: str | None = None
    avg_fps: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    layout: str | None = None
    header_frames: int | None = None  # the container's frame-count field (0 when absent)


@dataclass
class MediaInfo:
    """Summary of a media file: kind, streams, and what the video/audio loaders will see."""

    path: str
    kind: str  # 'video', 'audio' or 'image'
    format: str
    duration: float | None = None  # seconds (container duration)
    streams: list[StreamInfo] = field(default_factory=list)
    video_stream: int | None = None  # index of the stream load_video uses
    audio_stream: int | None = None  # index of the stream load_audio uses
    fps: float | None = None  # average frame rate (what the timestamp sentence uses)
    rotation: int = 0  # clockwise degrees applied before scaling
    frame_count: int | None = None  # decord-style count (video packets)
    width: int | None = None
    height: int | None = None
    has_audio: bool = False
    image_mode: str | None = None


def _secs(value: int | None, time_base) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


def probe(path: str | os.PathLike[str]) -> MediaInfo:
    """Describe ``path``: streams, duration, fps, rotation, decord frame count, audio presence.

    Demuxes the video stream once (packet count, as decord) and decodes its first frame (rotation).
    """
    p = check_path(path)
    if is_image(p):
        from PIL import Image

        with Image.open(p) as img:
            return MediaInfo(str(p), "image", img.format or "?", width=img.width, height=img.height, image_mode=img.mode)
    with open_container(p) as c:
        streams = []
        for s in c.streams:
            cc = s.codec_context
            info = StreamInfo(
                index=s.index,
                type=s.type,
                codec=(cc.name if cc is not None else "?"),
                start_time=_secs(s.start_time, s.time_base),
                duration=_secs(s.duration, s.time_base),
                header_frames=s.frames,
            )
            if s.type == "video":
                info.width, info.height = cc.width, cc.height
                info.pix_fmt = cc.pix_fmt
                info.avg_fps = float(s.average_rate) if s.average_rate else None
            elif s.type == "audio":
                info.sample_rate = cc.sample_rate
                info.channels = cc.channels
                info.layout = cc.layout.name if cc.layout is not None else None
            streams.append(info)
        info = MediaInfo(
            str(p), "video", c.format.name, duration=(c.duration / av.time_base if c.duration else None), streams=streams
        )
        if c.streams.audio:
            info.has_audio = True
            best = c.streams.best("audio")
            info.audio_stream = best.index if best is not None else c.streams.audio[0].index
        if not c.streams.video or is_image_container(c):
            info.kind = "audio" if c.streams.audio else "other"
            return info
        vs = best_video_stream(c, p)
        info.video_stream = vs.index
        info.width, info.height = vs.codec_context.width, vs.codec_context.height
        info.fps = float(vs.average_rate) if vs.average_rate else 0.0
        try:
            for s2 in c.streams:
                if s2.index != vs.index:
                    s2.discard = type(s2.discard).all
            frame = next(c.decode(vs), None)
            if frame is not None:
                info.rotation = _rotation_cw(frame)
        except av.error.FFmpegError:
            pass  # reported by load_video; probe stays descriptive
    info.frame_count = index_video(p).vlen
    return info
