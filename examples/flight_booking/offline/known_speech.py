"""Speech recognition for the local servers: known clips, found by their loudness.

The user's lines are synthesized speech (see ``user_voice.py``); the server learns each
one and recognises it again in the audio a client sends, by the shape of its loudness
over time. That shape survives what happens to audio on its way to the server: VAD
segmentation, resampling, a codec, a receiver's gain control and its jitter buffer,
which stretches or squeezes the audio by a few tens of milliseconds here and there.
"""

from __future__ import annotations

import numpy as np

STEP = 0.01
"""Seconds of audio per loudness value."""

CHUNK_STEPS = 30
"""The clip is aligned piece by piece, 0.3 s at a time..."""

DRIFT_STEPS = 3
"""...each piece up to 30 ms off where the previous one ended (a jitter buffer's stretch)."""


class KnownSpeech:
    """What the transcription endpoints recognise: clips of speech and what they say.

    A clip is recognised by the shape of its loudness over time (log RMS in 10 ms steps),
    wherever it sits in the audio sent and whatever its sample rate, so the speech that
    reaches the server after VAD segmentation and resampling, or through a LiveKit room,
    is still found. Audio that matches no clip closely is transcribed as ``""``, as
    OpenAI does with noise.
    """

    MIN_SIMILARITY = 0.8
    """Correlation of loudness shapes below which audio is not that clip."""

    def __init__(self) -> None:
        self._clips: list[tuple[str, np.ndarray]] = []
        self.heard: list[tuple[str, float, float]] = []
        """Each transcription: the closest clip's text, its similarity, and the seconds of
        audio heard (for a failure's message)."""

    def learn(self, text: str, pcm: bytes, sample_rate: int) -> None:
        """Recognise ``pcm`` (16-bit mono) as ``text`` from now on."""
        self._clips.append((text, loudness(pcm, sample_rate)))

    def transcribe(self, pcm: bytes, sample_rate: int) -> str:
        """The text of the known clip that ``pcm`` contains, or ``""``."""
        heard = loudness(pcm, sample_rate)
        scored = [(similarity(heard, clip), text) for text, clip in self._clips]
        best, text = max(scored, default=(0.0, ""))
        self.heard.append((text, round(best, 3), round(len(heard) * STEP, 2)))
        return text if best >= self.MIN_SIMILARITY else ""


def loudness(pcm: bytes, sample_rate: int) -> np.ndarray:
    """Log RMS of 16-bit mono ``pcm``, one value per :data:`STEP`."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    width = max(int(sample_rate * STEP), 1)
    frames = samples[: len(samples) // width * width].reshape(-1, width)
    rms = np.sqrt((frames**2).mean(axis=1))
    # below about -50 dBFS is silence: resampling noise there must not shape the match
    return np.log10(np.maximum(rms, 100.0))


def similarity(heard: np.ndarray, clip: np.ndarray) -> float:
    """How well ``clip`` matches a stretch of ``heard``, from 0 to 1.

    The clip is placed where it correlates best as a whole (the three best places are
    tried), then aligned piece by piece, each piece allowed to drift a little from where
    the previous one ended; the result is the length-weighted mean correlation of the
    pieces.
    """
    if len(clip) < 2 or len(heard) < 0.8 * len(clip):
        return 0.0
    if len(heard) < len(clip):
        heard = np.pad(heard, (0, len(clip) - len(heard)), constant_values=heard.min())
    whole = _sliding_correlation(heard, clip)
    return max(_aligned(heard, clip, int(start)) for start in np.argsort(whole)[-3:])


def _aligned(heard: np.ndarray, clip: np.ndarray, offset: int) -> float:
    total = 0.0
    for start in range(0, len(clip), CHUNK_STEPS):
        piece = clip[start : start + CHUNK_STEPS]
        if len(piece) < 5:
            break
        lo = max(offset + start - DRIFT_STEPS, 0)
        hi = min(offset + start + DRIFT_STEPS, len(heard) - len(piece))
        if hi < lo:
            break
        scores = _sliding_correlation(heard[lo : hi + len(piece)], piece)
        best = int(np.argmax(scores))
        total += float(scores[best]) * len(piece)
        offset = lo + best - start
    return total / len(clip)


def _sliding_correlation(heard: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """The correlation of ``clip`` with each same-length stretch of ``heard``."""
    windows = np.lib.stride_tricks.sliding_window_view(heard, len(clip))
    centred = windows - windows.mean(axis=1, keepdims=True)
    target = clip - clip.mean()
    norms = np.linalg.norm(centred, axis=1) * np.linalg.norm(target)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.where(norms > 0, centred @ target / norms, 0.0))
