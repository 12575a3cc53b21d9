"""Media pipeline: video frames, audio clips and images exactly as the official Video-LLaMA demo prepares them.

Public API::

    load_video(path, n_frames=8, sampling="uniform", ...) -> VideoClip   # (1, 3, T, 224, 224) + timestamp sentence
    load_audio(path, n_clips=8, ...) -> AudioClips                        # (1, 8, 1, 128, 204) ImageBind fbanks
    load_video_and_audio(path, ...) -> VideoWithAudio                     # both at once, audio in a 2nd thread
    load_image(path, exif_transpose=False) -> ImageInput                  # (1, 3, 1, 224, 224)
    probe(path) -> MediaInfo                                              # streams, duration, fps, rotation, frames

Errors are :class:`videollama.errors.MediaError` subclasses with a one-line message naming the file;
``NoAudioError`` means "skip the audio branch" (callers show it as a notice).
"""

from __future__ import annotations

from videollama.media.audio import AudioClips, load_audio, load_waveform_16k
from videollama.media.combined import VideoWithAudio, load_video_and_audio
from videollama.media.image import ImageInput, load_image
from videollama.media.normalize import CLIP_MEAN, CLIP_STD, normalize_frames
from videollama.media.probe import MediaInfo, StreamInfo, probe
from videollama.media.sampling import timestamp_message, uniform_indices
from videollama.media.video import VideoClip, load_video

__all__ = [
    "AudioClips",
    "CLIP_MEAN",
    "CLIP_STD",
    "ImageInput",
    "MediaInfo",
    "StreamInfo",
    "VideoClip",
    "VideoWithAudio",
    "load_audio",
    "load_image",
    "load_video",
    "load_video_and_audio",
    "load_waveform_16k",
    "normalize_frames",
    "probe",
    "timestamp_message",
    "uniform_indices",
]
