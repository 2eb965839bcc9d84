"""The agent's voice on the local servers: a steady tone instead of silence.

A listener in a LiveKit room receives audio frames all the time, silent ones while nobody
speaks; the local text-to-speech and realtime audio are this tone, so the listener can
tell when the agent speaks (and when a reply's first frame arrived) from the audio alone.
"""

from __future__ import annotations

import numpy as np

PITCH_HZ = 220.0
"""The tone's frequency."""

LEVEL = 4000
"""Peak amplitude (16-bit): about -18 dBFS, well above a codec's comfort noise."""


def tone(samples: int, sample_rate: int, *, offset: int = 0) -> bytes:
    """``samples`` of the tone as 16-bit mono PCM; ``offset`` (in samples) continues an
    earlier chunk of the same speech without a click."""
    t = (np.arange(samples) + offset) / sample_rate
    wave = LEVEL * np.sin(2 * np.pi * PITCH_HZ * t)
    return wave.astype("<i2").tobytes()
