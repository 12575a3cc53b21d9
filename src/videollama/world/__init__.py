"""The synthetic audio-visual world: short videos of coloured shapes with sounds, their full ground-truth
timelines, training annotations in the official dataset formats and balanced held-out question sets.

    from videollama.world import WorldOptions, generate_world
    generate_world("data/world", WorldOptions(n=500, seed=0), workers=2)

CLI: ``videollama world generate OUT --n 500 --seed 0 [--split heldout] [--speech] [--workers 2]``.
See docs in ``videollama.world.generate`` and the README section on the world.
"""

from videollama.world.generate import WorldOptions, generate_world
from videollama.world.scene import state_at_frame

__all__ = ["WorldOptions", "generate_world", "state_at_frame"]
