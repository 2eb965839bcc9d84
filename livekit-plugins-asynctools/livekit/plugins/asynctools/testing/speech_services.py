"""Scripted speech services: a VAD, an STT and a TTS whose output is given, not computed.

They subclass livekit-agents' own ``vad.VAD``, ``stt.STT`` and ``tts.TTS``, so a session
that uses them runs its real audio pipeline. :class:`~.audio.SimulatedUser` drives the VAD
and the STT; the TTS turns each text into silence as long as the text takes to say.

Example::

    from livekit.plugins.asynctools.testing.speech_services import FakeSTT, FakeTTS, FakeVAD

    session = AgentSession(vad=FakeVAD(), stt=FakeSTT(), tts=FakeTTS(seconds_per_char=0.001))
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, cast

from livekit import rtc
from livekit.agents import APIError, stt, tts, utils, vad
from livekit.agents.types import (
    DEFAULT_API_CONNECT_OPTIONS,
    NOT_GIVEN,
    APIConnectOptions,
    NotGivenOr,
)

SAMPLE_RATE = 24000
"""The sample rate of every frame the fakes make."""


class FakeVAD(vad.VAD):
    """A VAD whose speech events come from :class:`~.audio.SimulatedUser`.

    Example::

        vad = FakeVAD()
        user = SimulatedUser(vad=vad, stt=FakeSTT())  # sends its events to vad.streams
    """

    def __init__(self) -> None:
        super().__init__(capabilities=vad.VADCapabilities(update_interval=0.05))
        self.streams: list[_FakeVADStream] = []

    @property
    def model(self) -> str:
        """Model name for metrics."""
        return "fake-vad"

    @property
    def provider(self) -> str:
        """Provider name for metrics."""
        return "fake"

    def stream(self) -> vad.VADStream:
        """A new stream; the session opens one per activity."""
        stream = _FakeVADStream(self)
        self.streams.append(stream)
        return stream


class _FakeVADStream(vad.VADStream):
    async def _main_task(self) -> None:
        async for _ in self._input_ch:
            pass

    def send(self, kind: vad.VADEventType, *, speaking: bool, silence: float = 0.0) -> None:
        if self._event_ch.closed:  # its activity ended (a handoff): it hears nothing more
            return
        self._event_ch.send_nowait(
            vad.VADEvent(
                type=kind,
                samples_index=0,
                timestamp=time.time(),
                speech_duration=0.0,
                silence_duration=silence,
                speaking=speaking,
                raw_accumulated_silence=silence,
            )
        )


class FakeSTT(stt.STT[Any]):
    """A streaming STT whose transcripts come from :class:`~.audio.SimulatedUser`.

    Example::

        session = AgentSession(vad=FakeVAD(), stt=FakeSTT(), llm=ScriptedLLM(), tts=FakeTTS())
    """

    def __init__(self) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=True, interim_results=False))
        self.streams: list[_FakeSTTStream] = []

    @property
    def model(self) -> str:
        """Model name for metrics."""
        return "fake-stt"

    @property
    def provider(self) -> str:
        """Provider name for metrics."""
        return "fake"

    async def _recognize_impl(
        self,
        buffer: Any,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> stt.SpeechEvent:
        raise NotImplementedError("FakeSTT only streams")

    def stream(
        self,
        *,
        language: Any = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        **kwargs: Any,
    ) -> stt.SpeechStream:
        """A new stream; the session opens one per activity."""
        stream = _FakeSTTStream(stt=self, conn_options=conn_options)
        self.streams.append(stream)
        return stream


class _FakeSTTStream(stt.SpeechStream):
    async def _run(self) -> None:
        # The session flushes a real STT by pushing seconds of silence at once and waits
        # for its final transcript; the microphone delivers audio in real time. A burst
        # of audio is that flush: answer it, there is nothing left to transcribe.
        loop = asyncio.get_running_loop()
        burst_start, burst, answered = loop.time(), 0.0, False
        async for data in self._input_ch:
            if not isinstance(data, rtc.AudioFrame):
                continue
            if loop.time() - burst_start > 0.05:
                burst_start, burst, answered = loop.time(), 0.0, False
            burst += data.duration
            if burst >= 0.3 and not answered:
                answered = True
                self.send_final("")

    def send_final(self, text: str) -> None:
        if self._event_ch.closed:  # its activity ended (a handoff): it hears nothing more
            return
        self._event_ch.send_nowait(
            stt.SpeechEvent(
                type=stt.SpeechEventType.FINAL_TRANSCRIPT,
                alternatives=[stt.SpeechData(language=cast(Any, "en"), text=text)],
            )
        )


class FakeTTS(tts.TTS[Any]):
    """A TTS that turns text into silence lasting ``seconds_per_char`` per character.

    Args:
        seconds_per_char: Spoken duration of one character.
        fail_when: Called with each text to synthesize; when it returns True, that
            synthesis sends the first half of its audio, then fails with a
            non-retryable ``APIError`` (a provider dropping mid-reply). None: never fails.

    Example::

        tts = FakeTTS(seconds_per_char=0.002, fail_when=lambda text: "Tokyo" in text)
    """

    def __init__(
        self,
        *,
        seconds_per_char: float = 0.01,
        fail_when: Callable[[str], bool] | None = None,
    ) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=SAMPLE_RATE,
            num_channels=1,
        )
        self.seconds_per_char = seconds_per_char
        self.fail_when = fail_when
        self.texts: list[str] = []
        """Every text it was asked to synthesize, in order."""
        self.failed: list[str] = []
        """The texts whose synthesis failed (``fail_when``), in order."""

    @property
    def model(self) -> str:
        """Model name for metrics."""
        return "fake-tts"

    @property
    def provider(self) -> str:
        """Provider name for metrics."""
        return "fake"

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        """Synthesize ``text`` (recorded in :attr:`texts`)."""
        self.texts.append(text)
        return _FakeChunkedStream(tts=self, input_text=text, conn_options=conn_options)


class _FakeChunkedStream(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        assert isinstance(self._tts, FakeTTS)
        output_emitter.initialize(
            request_id=utils.shortuuid(),
            sample_rate=SAMPLE_RATE,
            num_channels=1,
            mime_type="audio/pcm",
        )
        samples = max(int(len(self.input_text) * self._tts.seconds_per_char * SAMPLE_RATE), 1)
        fail_when = self._tts.fail_when
        if fail_when is not None and fail_when(self.input_text):
            self._tts.failed.append(self.input_text)
            output_emitter.push(b"\x00\x00" * (samples // 2))
            raise APIError("scripted TTS failure", retryable=False)
        output_emitter.push(b"\x00\x00" * samples)
        output_emitter.flush()
