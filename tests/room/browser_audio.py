"""The browser user's voice: their lines placed on a timeline, in one WAV file.

Chromium's fake microphone plays a WAV file once from the moment the page opens the
microphone (``--use-file-for-fake-audio-capture=<file>%noloop``): the lines are
synthesized speech (eSpeak NG, as the offline demo's user), each at its own time, with
silence between them.
"""

from __future__ import annotations

import sys
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

OFFLINE = Path(__file__).resolve().parents[2] / "examples" / "flight_booking" / "offline"
if str(OFFLINE) not in sys.path:
    sys.path.insert(0, str(OFFLINE))

from user_voice import speak  # noqa: E402

SAMPLE_RATE = 48000
"""The file's sample rate: WebRTC's own, so Chromium need not resample."""


@dataclass(frozen=True)
class Cue:
    """One line on the timeline.

    Attributes:
        text: What is said.
        start: Seconds from the start of the file.
        end: Seconds from the start of the file.
    """

    text: str
    start: float
    end: float


def write_timeline(
    path: Path, lines: Sequence[tuple[float, str]], *, tail: float = 1.0
) -> list[Cue]:
    """Write a mono 16-bit WAV file with each ``(start_seconds, text)`` spoken at its time.

    Args:
        path: The file to write.
        lines: When each line starts, in order.
        tail: Seconds of silence after the last line.

    Raises:
        ValueError: A line starts before the one before it has ended.
    """
    cues: list[Cue] = []
    clips: list[tuple[int, np.ndarray]] = []
    for start, text in lines:
        voice = speak(text)
        samples = _resampled(np.frombuffer(voice.pcm, dtype="<i2"), voice.sample_rate)
        cue = Cue(text=text, start=start, end=start + len(samples) / SAMPLE_RATE)
        if cues and cue.start < cues[-1].end:
            raise ValueError(f"{text!r} starts at {start} s, before {cues[-1].text!r} ends")
        cues.append(cue)
        clips.append((round(start * SAMPLE_RATE), samples))
    total = round((cues[-1].end + tail) * SAMPLE_RATE) if cues else 0
    track = np.zeros(total, dtype="<i2")
    for offset, samples in clips:
        track[offset : offset + len(samples)] = samples
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(track.tobytes())
    return cues


def _resampled(samples: np.ndarray, rate: int) -> np.ndarray:
    """``samples`` at :data:`SAMPLE_RATE` (linear interpolation: speech, not music)."""
    if rate == SAMPLE_RATE:
        return samples.astype("<i2")
    count = round(len(samples) * SAMPLE_RATE / rate)
    positions = np.arange(count) * rate / SAMPLE_RATE
    return np.interp(positions, np.arange(len(samples)), samples).astype("<i2")
