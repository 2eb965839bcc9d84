"""Simulated audio: a user who speaks through VAD and STT, and a speaker that plays TTS.

The microphone and speaker subclass livekit-agents' own audio I/O, and the VAD, STT and
TTS are the fakes of :mod:`.speech_services`, so the session runs its real audio pipeline
(turn detection, endpointing, interruptions, transcript synchronisation); only the signal
is scripted. Audio plays in real time, so keep the texts short and the speed high
(``seconds_per_char``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from livekit import rtc
from livekit.agents import Agent, AgentSession, llm, vad
from livekit.agents.voice.io import AudioInput, AudioOutput, AudioOutputCapabilities

from .conversation import ConversationLog
from .speech_services import SAMPLE_RATE, FakeSTT, FakeTTS, FakeVAD


class SilentAudioInput(AudioInput):
    """The session's microphone: silent (speech is simulated through VAD and STT)."""

    def __init__(self) -> None:
        super().__init__(label="simulated-microphone")
        self._closed = asyncio.Event()

    async def __anext__(self) -> rtc.AudioFrame:
        await asyncio.sleep(0.02)
        return rtc.AudioFrame(
            data=b"\x00\x00" * 320, sample_rate=16000, num_channels=1, samples_per_channel=320
        )


class ScriptedMicrophone(AudioInput):
    """The session's microphone: silence, and the speech it is given, in real time.

    Feed it real speech audio (a recording, a synthesized voice) and the session's own
    VAD and STT hear it, as from a person.

    Args:
        sample_rate: Rate of the frames it delivers; speech at another rate is resampled.
        frame_duration: Seconds of audio per frame.

    Example::

        mic = ScriptedMicrophone()
        session.input.audio = mic
        await session.start(agent)
        await mic.say(pcm, sample_rate=22050)  # returns once the speech has played
    """

    def __init__(self, *, sample_rate: int = 16000, frame_duration: float = 0.02) -> None:
        super().__init__(label="scripted-microphone")
        self._rate = sample_rate
        self._frame_samples = int(sample_rate * frame_duration)
        self._queue: list[tuple[bytes, asyncio.Future[None]]] = []
        self._next_at: float | None = None

    async def say(self, pcm: bytes, *, sample_rate: int) -> None:
        """Speak ``pcm`` (16-bit mono); returns once all of it has been delivered."""
        if sample_rate != self._rate:
            resampler = rtc.AudioResampler(sample_rate, self._rate)
            frame = rtc.AudioFrame(
                data=pcm,
                sample_rate=sample_rate,
                num_channels=1,
                samples_per_channel=len(pcm) // 2,
            )
            out = [*resampler.push(frame), *resampler.flush()]
            pcm = b"".join(bytes(f.data) for f in out)
        done = asyncio.get_running_loop().create_future()
        self._queue.append((pcm, done))
        await done

    async def __anext__(self) -> rtc.AudioFrame:
        loop = asyncio.get_running_loop()
        frame_time = self._frame_samples / self._rate
        self._next_at = (self._next_at or loop.time()) + frame_time
        await asyncio.sleep(max(self._next_at - loop.time(), 0.0))
        size = self._frame_samples * 2
        data = b""
        while len(data) < size and self._queue:
            pcm, done = self._queue[0]
            take = pcm[: size - len(data)]
            data += take
            if len(take) == len(pcm):
                self._queue.pop(0)
                if not done.done():
                    done.set_result(None)
            else:
                self._queue[0] = (pcm[len(take) :], done)
        data = data.ljust(size, b"\x00")
        return rtc.AudioFrame(
            data=data,
            sample_rate=self._rate,
            num_channels=1,
            samples_per_channel=self._frame_samples,
        )


class RealTimeSpeaker(AudioOutput):
    """The session's speaker: plays audio in real time and can be interrupted.

    Attributes:
        played: ``(seconds played, interrupted)`` for each finished segment.
    """

    def __init__(self) -> None:
        super().__init__(
            label="simulated-speaker",
            capabilities=AudioOutputCapabilities(pause=False),
            sample_rate=SAMPLE_RATE,
        )
        self.played: list[tuple[float, bool]] = []
        self._pushed = 0.0
        self._started_at: float | None = None
        self._finish: asyncio.TimerHandle | None = None

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        """Queue a frame for playout."""
        await super().capture_frame(frame)
        if self._started_at is None:
            self._started_at = time.time()
            self.on_playback_started(created_at=self._started_at)
        self._pushed += frame.duration

    def flush(self) -> None:
        """The segment is complete: it finishes once everything queued has played."""
        super().flush()
        if self._started_at is None:
            return
        remaining = max(self._pushed - (time.time() - self._started_at), 0.0)
        pushed = self._pushed
        self._finish = asyncio.get_running_loop().call_later(
            remaining, lambda: self._finished(pushed, interrupted=False)
        )

    def clear_buffer(self) -> None:
        """Stop playing (the user interrupted)."""
        if self._started_at is None:
            return
        if self._finish is not None:
            self._finish.cancel()
        self._finished(min(time.time() - self._started_at, self._pushed), interrupted=True)

    def _finished(self, position: float, *, interrupted: bool) -> None:
        self._pushed, self._started_at, self._finish = 0.0, None, None
        self.played.append((position, interrupted))
        self.on_playback_finished(playback_position=position, interrupted=interrupted)


class SimulatedUser:
    """A user who speaks to the session through its VAD and STT.

    Args:
        vad: The session's :class:`FakeVAD`.
        stt: The session's :class:`FakeSTT`.
    """

    def __init__(self, *, vad: FakeVAD, stt: FakeSTT) -> None:
        self._vad = vad
        self._stt = stt

    async def start_speaking(self) -> None:
        """Start of speech, as the VAD reports it."""
        for stream in self._vad.streams:
            stream.send(vad.VADEventType.START_OF_SPEECH, speaking=True)
            stream.send(vad.VADEventType.INFERENCE_DONE, speaking=True)

    async def stop_speaking(self) -> None:
        """End of speech, as the VAD reports it."""
        for stream in self._vad.streams:
            stream.send(vad.VADEventType.INFERENCE_DONE, speaking=False, silence=1.0)
            stream.send(vad.VADEventType.END_OF_SPEECH, speaking=False, silence=1.0)

    def transcribe(self, text: str) -> None:
        """The STT's final transcript of what the user said."""
        for stream in self._stt.streams:
            stream.send_final(text)

    async def say(self, text: str, *, duration: float = 0.2, transcript_lag: float = 0.0) -> None:
        """Speak ``text`` for ``duration`` seconds; the transcript follows ``transcript_lag``
        seconds after the end of speech."""
        await self.start_speaking()
        elapsed = 0.0
        while elapsed < duration:
            await asyncio.sleep(0.05)
            elapsed += 0.05
            for stream in self._vad.streams:
                stream.send(vad.VADEventType.INFERENCE_DONE, speaking=True)
        await self.stop_speaking()
        if transcript_lag:
            await asyncio.sleep(transcript_lag)
        self.transcribe(text)


class VoiceSession:
    """A running voice session and its simulated parts (see :func:`voice_session`).

    Attributes:
        session: The real ``AgentSession``.
        log: What was said, in order.
        user: The simulated user.
        tts: The fake TTS (what the agent was asked to say).
        speaker: The speaker (what played, and whether it was cut off).
    """

    def __init__(
        self,
        *,
        session: AgentSession[Any],
        log: ConversationLog,
        user: SimulatedUser,
        tts: FakeTTS,
        speaker: RealTimeSpeaker,
    ) -> None:
        self.session = session
        self.log = log
        self.user = user
        self.tts = tts
        self.speaker = speaker


async def start_voice_session(
    agent: Agent,
    *,
    llm: llm.LLM[Any],
    seconds_per_char: float = 0.01,
    endpointing_delay: float = 0.1,
    **session_options: Any,
) -> VoiceSession:
    """Start an ``AgentSession`` with simulated speech in and out; the caller closes it.

    :func:`voice_session` is the same as a context manager; this form suits a test that
    drives the session step by step (a hypothesis state machine, for example).

    Args:
        agent: The agent to run.
        llm: The model, typically a :class:`ScriptedLLM`.
        seconds_per_char: How long the agent takes to say one character.
        endpointing_delay: Silence after which the user's turn ends.
        **session_options: Passed to ``AgentSession``.

    Example::

        v = await start_voice_session(agent, llm=ScriptedLLM(responder=respond))
        try:
            await v.user.say("book a flight")
            await v.log.wait_for(lambda log: "Booked." in log.heard)
        finally:
            await v.session.aclose()
    """
    fake_vad, fake_stt, fake_tts = FakeVAD(), FakeSTT(), FakeTTS(seconds_per_char=seconds_per_char)
    turn_handling: Any = {
        "turn_detection": "vad",
        "endpointing": {"min_delay": endpointing_delay, "max_delay": endpointing_delay * 4},
        "interruption": {"mode": "vad", "min_duration": 0.05, "resume_false_interruption": False},
    }
    session: AgentSession[Any] = AgentSession(
        vad=fake_vad,
        stt=fake_stt,
        llm=llm,
        tts=fake_tts,
        turn_handling=turn_handling,
        **session_options,
    )
    speaker = RealTimeSpeaker()
    session.input.audio = SilentAudioInput()
    session.output.audio = speaker
    log = ConversationLog(session)
    await session.start(agent)
    user = SimulatedUser(vad=fake_vad, stt=fake_stt)
    return VoiceSession(session=session, log=log, user=user, tts=fake_tts, speaker=speaker)


@asynccontextmanager
async def voice_session(
    agent: Agent,
    *,
    llm: llm.LLM[Any],
    seconds_per_char: float = 0.01,
    endpointing_delay: float = 0.1,
    **session_options: Any,
) -> AsyncIterator[VoiceSession]:
    """Start an ``AgentSession`` with simulated speech in and out, close it afterwards.

    It takes the arguments of :func:`start_voice_session`.

    Example::

        async with voice_session(agent, llm=ScriptedLLM(responder=respond)) as v:
            await v.user.say("book a flight")
            await v.log.wait_for(lambda log: "Booked." in log.heard)
    """
    v = await start_voice_session(
        agent,
        llm=llm,
        seconds_per_char=seconds_per_char,
        endpointing_delay=endpointing_delay,
        **session_options,
    )
    try:
        yield v
    finally:
        await v.session.aclose()
