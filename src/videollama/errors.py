"""One exception hierarchy for everything a user can get wrong.

Every message names what was wrong and where (file, key, field), on one line.
"""


class VideoLLaMAError(Exception):
    """Base class of all user-facing errors."""


class ConfigError(VideoLLaMAError, ValueError):
    """A config file, preset or field is invalid."""


class CheckpointError(VideoLLaMAError):
    """A checkpoint file is missing, corrupt, for the wrong slot, or does not match the config."""


class MediaError(VideoLLaMAError):
    """A media file cannot be used (base class of the media errors)."""


class MediaNotFoundError(MediaError, FileNotFoundError):
    """The media file does not exist."""


class UnsupportedMediaError(MediaError):
    """The file is not a video, audio or image format we can decode."""


class CorruptMediaError(MediaError):
    """The file is truncated or its stream cannot be decoded."""


class NoAudioError(MediaError):
    """The file has no usable audio track (the audio branch is skipped, with a notice)."""
