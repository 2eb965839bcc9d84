"""The simulated user's voice: real speech audio, synthesized offline with eSpeak NG.

The pipeline demo speaks the user's lines into the agent's microphone, so Silero VAD
hears real speech and the OpenAI STT client sends real audio to the local server. The
voice is eSpeak NG, loaded from the ``espeakng-loader`` wheel (the library and its
data ship inside it: nothing is downloaded at run time).
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from functools import cache

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_RATE = 1
WORDS_PER_MINUTE = 220
"""Speaking rate of the simulated user (eSpeak's default is 175)."""
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


@dataclass(frozen=True)
class Utterance:
    """A line of speech: its text and its audio (16-bit mono PCM).

    Attributes:
        text: What is said.
        pcm: The samples, 16-bit signed little-endian, mono.
        sample_rate: Samples per second.
    """

    text: str
    pcm: bytes
    sample_rate: int

    @property
    def duration(self) -> float:
        """Seconds of speech."""
        return len(self.pcm) / 2 / self.sample_rate


class _ESpeak:
    """The eSpeak NG library, initialised once; synthesis is serialised by a lock."""

    def __init__(self) -> None:
        import espeakng_loader

        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data_path = espeakng_loader.get_data_path().encode()
        self.sample_rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, 0)
        if self.sample_rate <= 0:
            raise RuntimeError("eSpeak NG failed to initialise")
        self._chunks: list[bytes] = []
        # kept on self: the library calls it for as long as it is loaded
        self._callback = _SYNTH_CALLBACK(self._on_audio)
        self._lib.espeak_SetSynthCallback(self._callback)
        if self._lib.espeak_SetVoiceByName(b"en-us") != 0:
            raise RuntimeError("eSpeak NG has no en-us voice")
        self._lib.espeak_SetParameter(_ESPEAK_RATE, WORDS_PER_MINUTE, 0)
        self._lock = threading.Lock()

    def _on_audio(self, wav: ctypes._Pointer[ctypes.c_short], samples: int, _: int) -> int:
        if wav and samples > 0:
            self._chunks.append(ctypes.string_at(wav, samples * 2))
        return 0  # go on

    def synthesize(self, text: str) -> bytes:
        with self._lock:
            self._chunks = []
            encoded = text.encode()
            status = self._lib.espeak_Synth(
                encoded, len(encoded) + 1, 0, 0, 0, _ESPEAK_CHARS_UTF8, None, None
            )
            if status != 0:
                raise RuntimeError(f"eSpeak NG could not synthesize (status {status})")
            self._lib.espeak_Synchronize()
            return b"".join(self._chunks)


@cache
def _espeak() -> _ESpeak:
    return _ESpeak()


@cache
def speak(text: str) -> Utterance:
    """``text`` spoken by the simulated user (synthesized once, then cached)."""
    engine = _espeak()
    return Utterance(text=text, pcm=engine.synthesize(text), sample_rate=engine.sample_rate)
