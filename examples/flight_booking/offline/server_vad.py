"""Server-side turn detection for the local realtime server: the user's turns, from audio.

OpenAI's realtime sessions detect the user's speech in the audio the client appends
(``input_audio_buffer.append``) when ``turn_detection`` is set. :class:`ServerVad` does the
same from loudness alone, which is enough for synthesized speech over silence: speech
starts when the level stays above a threshold for :data:`START_MS`, and stops after the
session's ``silence_duration_ms`` below it. The turn it returns carries the audio from
``prefix_padding_ms`` before the start to the stop, for transcription.

``semantic_vad`` (the default of livekit-plugins-openai) decides the end of a turn from
what was said; here it waits a fixed silence that depends on ``eagerness``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

FRAME_MS = 10
"""The detector looks at the audio 10 ms at a time."""

START_MS = 30
"""Speech starts after this long above the threshold (a click is not speech)."""

SEMANTIC_SILENCE_MS = {"low": 1000, "medium": 500, "high": 300, "auto": 500}
"""The silence that ends a turn under ``semantic_vad``, by ``eagerness``."""


def threshold_rms(threshold: float) -> float:
    """The 16-bit RMS level of ``turn_detection.threshold`` (0 to 1, OpenAI's default 0.5):
    0.5 is -40 dBFS, and each 0.1 more asks 4 dB more."""
    dbfs = -60.0 + 40.0 * min(max(threshold, 0.0), 1.0)
    return float(32768.0 * 10 ** (dbfs / 20))


@dataclass(frozen=True)
class SpeechStarted:
    """The user started speaking ``audio_start_ms`` into the session's input audio."""

    audio_start_ms: int


@dataclass(frozen=True)
class SpeechStopped:
    """The user stopped speaking at ``audio_end_ms``; ``pcm`` is the turn's audio
    (16-bit mono, with the prefix padding), to transcribe."""

    audio_end_ms: int
    pcm: bytes


Detected = SpeechStarted | SpeechStopped


class ServerVad:
    """Turn detection over the input audio of one realtime session.

    Args:
        sample_rate: Of the input audio (16-bit mono).
        turn_detection: The session's ``audio.input.turn_detection``.
        start_ms: Input audio before this one, in ms (offsets count from the session's
            first appended audio).
    """

    def __init__(self, *, sample_rate: int, turn_detection: dict[str, Any], start_ms: int = 0):
        self.sample_rate = sample_rate
        self.turn_detection = dict(turn_detection)
        self._frame_bytes = sample_rate * FRAME_MS // 1000 * 2
        self._level = threshold_rms(float(turn_detection.get("threshold") or 0.5))
        if turn_detection.get("type") == "semantic_vad":
            eagerness = str(turn_detection.get("eagerness") or "auto")
            self._silence_ms = SEMANTIC_SILENCE_MS.get(eagerness, SEMANTIC_SILENCE_MS["auto"])
            self._prefix_ms = 300
        else:
            self._silence_ms = int(turn_detection.get("silence_duration_ms") or 500)
            self._prefix_ms = int(turn_detection.get("prefix_padding_ms") or 300)
        self._pending = bytearray()  # less than one frame, waiting for the rest
        self._ms = start_ms  # the end of the audio seen so far
        self._recent: list[bytes] = []  # the frames before speech, for the prefix padding
        self._turn = bytearray()
        self._loud_ms = 0  # above the threshold in a row (before speech starts)
        self._quiet_ms = 0  # below it in a row (during speech)
        self.speaking = False

    def push(self, pcm: bytes) -> list[Detected]:
        """Feed appended audio; returns what was detected in it, in order."""
        self._pending += pcm
        detected: list[Detected] = []
        while len(self._pending) >= self._frame_bytes:
            frame = bytes(self._pending[: self._frame_bytes])
            del self._pending[: self._frame_bytes]
            self._ms += FRAME_MS
            if (event := self._frame(frame)) is not None:
                detected.append(event)
        return detected

    def clear(self) -> None:
        """Forget the audio not yet part of a finished turn (``input_audio_buffer.clear``)."""
        self._pending.clear()
        self._recent.clear()
        self._turn.clear()
        self._loud_ms = self._quiet_ms = 0
        self.speaking = False

    def _frame(self, frame: bytes) -> Detected | None:
        samples = np.frombuffer(frame, dtype="<i2").astype(np.float64)
        loud = float(np.sqrt((samples**2).mean())) > self._level
        if not self.speaking:
            self._recent.append(frame)
            del self._recent[: -((self._prefix_ms + START_MS) // FRAME_MS)]
            self._loud_ms = self._loud_ms + FRAME_MS if loud else 0
            if self._loud_ms < START_MS:
                return None
            self.speaking, self._quiet_ms = True, 0
            self._turn = bytearray(b"".join(self._recent))
            self._recent.clear()
            return SpeechStarted(audio_start_ms=self._ms - self._loud_ms)
        self._turn += frame
        self._quiet_ms = 0 if loud else self._quiet_ms + FRAME_MS
        if self._quiet_ms < self._silence_ms:
            return None
        self.speaking, self._loud_ms = False, 0
        pcm, self._turn = bytes(self._turn), bytearray()
        return SpeechStopped(audio_end_ms=self._ms - self._quiet_ms, pcm=pcm)
