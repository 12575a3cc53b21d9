"""Video frames and audio clips of one file in one call, decoded concurrently.

The demo's "video with audio" path needs both :func:`~videollama.media.load_video` and
:func:`~videollama.media.load_audio`. They read the file independently (own container, own decoder), and PyAV
releases the GIL while it demuxes, decodes and filters, so running the audio branch in a second thread makes the
wall time about ``max(video, audio)`` instead of their sum on a multi-core machine. Results are exactly those of
the two separate calls (same code, same inputs; nothing is shared between the threads but the path).
"""

from __future__ import annotations

import os
import random
import threading
from dataclasses import dataclass

from videollama.errors import NoAudioError
from videollama.media._container import check_path
from videollama.media.audio import CLIP_DURATION, N_CLIPS, AudioClips, load_audio
from videollama.media.video import DEFAULT_SIZE, VideoClip, load_video


@dataclass
class VideoWithAudio:
    """What :func:`load_video_and_audio` returns."""

    video: VideoClip
    audio: AudioClips | None  # None when the audio branch is skipped (see audio_error)
    audio_error: NoAudioError | None = None  # why there is no audio (no stream, too short...); show as a notice


def load_video_and_audio(
    path: str | os.PathLike[str],
    n_frames: int | None = 8,
    sampling: str = "uniform",
    *,
    n_clips: int = N_CLIPS,
    clip_duration: int = CLIP_DURATION,
    fps: float | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
    seed: random.Random | int | None = None,
    size: tuple[int, int] = DEFAULT_SIZE,
    threads: int = 0,
    full_resample: bool = False,
    concurrent: bool = True,
) -> VideoWithAudio:
    """``load_video(path, ...)`` and ``load_audio(path, ...)`` at once; the audio runs in a worker thread.

    A :class:`NoAudioError` from the audio branch is returned in ``audio_error`` (the demo then uses the
    video-only prompt); any other error of either branch is raised, the video's first. ``concurrent=False`` runs
    the two one after the other (same results).
    """
    p = check_path(path)
    audio_box: dict[str, object] = {}

    def audio_job() -> None:
        try:
            audio_box["value"] = load_audio(p, n_clips, clip_duration=clip_duration, full_resample=full_resample)
        except BaseException as exc:  # handed to the caller's thread below
            audio_box["error"] = exc

    worker: threading.Thread | None = None
    if concurrent:
        worker = threading.Thread(target=audio_job, name="videollama-audio", daemon=True)
        worker.start()
    try:
        video = load_video(
            p, n_frames, sampling, fps=fps, start_s=start_s, end_s=end_s, seed=seed, size=size, threads=threads
        )
    finally:
        if worker is not None:
            worker.join()  # never leave the audio decode running behind the caller's back
    if worker is None:
        audio_job()
    err = audio_box.get("error")
    if isinstance(err, NoAudioError):
        return VideoWithAudio(video=video, audio=None, audio_error=err)
    if err is not None:
        raise err  # type: ignore[misc]
    audio = audio_box["value"]
    assert isinstance(audio, AudioClips)
    return VideoWithAudio(video=video, audio=audio)
