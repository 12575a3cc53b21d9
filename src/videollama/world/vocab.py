"""The world's vocabulary: shapes, colours, sounds, words and the train / held-out split of (shape, colour) pairs."""

from __future__ import annotations

# Well separated RGB colours (nearest-colour classification survives H.264 + resizing).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "green": (30, 200, 40),
    "blue": (40, 80, 245),
    "yellow": (245, 225, 30),
    "white": (245, 245, 245),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
# Plain, dark backgrounds (never confused with an object colour).
BACKGROUNDS: dict[str, tuple[int, int, int]] = {"black": (0, 0, 0), "dark grey": (48, 48, 48)}

SIZES_PX: tuple[int, ...] = (64, 96, 128, 160, 192, 224)
FPS_CHOICES: tuple[int, ...] = (8, 12, 24, 30)
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")

# Sounds.
SAMPLE_RATE = 16000
TONE_HZ = {"low": 300.0, "high": 1500.0}
TIMBRES = {"sine": "smooth", "square": "buzzy"}  # waveform -> canonical answer word
BEEP_HZ = 880.0
BEEP_ON_S, BEEP_OFF_S = 0.09, 0.11
TONE_S, NOISE_S = 0.5, 0.4
WORDS: tuple[str, ...] = ("apple", "river", "music", "window")
SOUND_NAMES = {"tone": "tone", "noise": "noise", "beeps": "beeps", "speech": "speech"}  # canonical answers
SOUND_PHRASE = {"tone": ("the tone", "plays"), "noise": ("the noise burst", "plays"), "beeps": ("the beeps", "play"),
                "speech": ("the spoken word", "is heard")}

VISUAL_STORIES: tuple[str, ...] = ("still", "sequence", "move", "recolour", "appear", "disappear", "empty")
AUDIO_STORIES: tuple[str, ...] = ("silence", "tone", "noise", "beeps", "pair", "speech")

N_SLOTS = 8  # the 8 uniformly sampled frames: visual changes happen only at their indices


def heldout_pair(shape: str, colour: str) -> bool:
    """(shape, colour) pairs reserved for the held-out split: one colour per shape, one shape per colour."""
    return (SHAPES.index(shape) * 2 + list(COLOURS).index(colour)) % len(COLOURS) == 0


HELDOUT_PAIRS = tuple((s, c) for s in SHAPES for c in COLOURS if heldout_pair(s, c))
