"""A person in a LiveKit room, through the real clients, talking to the flight agent.

:class:`RoomUser` joins with a token from ``livekit-api`` and the ``livekit`` rtc SDK, as a
front end would: it publishes a microphone track that carries the synthesized user lines
(eSpeak NG, the offline demo's voice) and silence in between, as a microphone does;
subscribes to the agent's audio and notes every frame's arrival time and loudness;
and reads the agent's transcriptions (``lk.transcription``) and the background tasks the
plugin publishes (``lk.asynctools.tasks``).

:func:`converse` is the offline demo's user in the room: once the agent has been quiet a
moment it says its next line, agrees to pay whenever the agent has just asked, and
finally asks to cancel the hotel.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from livekit import api, rtc
from livekit.rtc.data_stream import StreamError

OFFLINE = Path(__file__).resolve().parents[2] / "examples" / "flight_booking" / "offline"
if str(OFFLINE) not in sys.path:
    sys.path.insert(0, str(OFFLINE))

from demo import CANCEL_LINE, PAYMENT_QUESTION, REACTION_TIME, USER_LINES, YES_LINE  # noqa: E402
from user_voice import speak  # noqa: E402

TASKS_TOPIC = "lk.asynctools.tasks"
TRANSCRIPTION_TOPIC = "lk.transcription"
CHAT_TOPIC = "lk.chat"
AGENT_STATE = "lk.agent.state"

SAMPLE_RATE = 48000
FRAME_MS = 10
_FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000

SETTLE_TIME = 2.0
"""How long the user waits for the agent, once it joined, before saying the first line.

People do; and the agent hears its first second in the room distorted (its receiver's
jitter buffer and gain control are adapting, on a machine busy starting the job), too
much for the local servers to recognise the line."""

AUDIBLE_RMS = 300.0
"""Loudness (16-bit RMS) above which a received frame is speech, not silence or codec
noise: the agent's voice on the local servers peaks at 4000 (about 2800 RMS)."""


@dataclass(frozen=True)
class HeardFrame:
    """One frame of the agent's audio, as it reached the user.

    Attributes:
        at: ``time.time()`` when the frame arrived.
        rms: Its loudness (16-bit RMS).
        duration: Seconds of audio in it.
    """

    at: float
    rms: float
    duration: float


@dataclass(frozen=True)
class Segment:
    """One transcription text stream: a segment of what the agent or the user said.

    Attributes:
        opened_at: ``time.time()`` when the stream opened.
        closed_at: ``time.time()`` when it was read in full.
        identity: Whose speech it is (the stream's sender).
        segment_id: The ``lk.segment_id`` attribute.
        final: The ``lk.transcription_final`` attribute.
        text: The text.
    """

    opened_at: float
    closed_at: float
    identity: str
    segment_id: str
    final: bool
    text: str


@dataclass(frozen=True)
class TaskMessage:
    """One message of the plugin's task topic, as received.

    Attributes:
        at: ``time.time()`` when it was read in full.
        message: The decoded JSON.
    """

    at: float
    message: dict[str, Any]


@dataclass
class _Line:
    frames: deque[rtc.AudioFrame]
    spoken: asyncio.Event = field(default_factory=asyncio.Event)


class RoomUser:
    """A user in the room: ``async with RoomUser(url=..., ...) as user``.

    Args:
        url: The LiveKit server (``ws://127.0.0.1:<port>``).
        api_key: Its API key, to sign the user's token.
        api_secret: Its API secret.
        room: The room to join (created on join).
        identity: The user's identity.
        agent_name: Dispatch the agent of this name to the room (a worker registered
            with an ``agent_name`` takes only the jobs asked of it by name).

    Attributes:
        frames: Every frame of the agent's audio that arrived, in order.
        segments: Every transcription segment read, in order of completion.
        task_messages: Every message of the task topic read, in the order sent.
        lines_said: ``(time.time(), line)`` of each line the user started to say.
    """

    def __init__(
        self,
        *,
        url: str,
        api_key: str,
        api_secret: str,
        room: str,
        identity: str = "user",
        agent_name: str | None = None,
    ) -> None:
        self.url = url
        self.room_name = room
        self.identity = identity
        token = (
            api.AccessToken(api_key, api_secret)
            .with_identity(identity)
            .with_name("Test user")
            .with_grants(api.VideoGrants(room_join=True, room=room))
        )
        if agent_name is not None:
            dispatch = api.RoomAgentDispatch(agent_name=agent_name)
            token = token.with_room_config(api.RoomConfiguration(agents=[dispatch]))
        self._token = token.to_jwt()
        self.room = rtc.Room()
        self.frames: list[HeardFrame] = []
        self.segments: list[Segment] = []
        self.task_messages: list[TaskMessage] = []
        self.lines_said: list[tuple[float, str]] = []
        self._source = rtc.AudioSource(SAMPLE_RATE, 1, queue_size_ms=50)
        self._lines: deque[_Line] = deque()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._agent_track = asyncio.Event()

    async def __aenter__(self) -> RoomUser:
        await self.join()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.leave()

    # -- joining and leaving

    async def join(self) -> None:
        """Join the room, start the microphone (silence until a line is said) and listen."""
        self.room.on("track_subscribed", self._on_track_subscribed)
        self.room.register_text_stream_handler(TRANSCRIPTION_TOPIC, self._on_transcription)
        self.room.register_text_stream_handler(TASKS_TOPIC, self._on_task_message)
        await self.room.connect(self.url, self._token)
        track = rtc.LocalAudioTrack.create_audio_track("microphone", self._source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        await self.room.local_participant.publish_track(track, options)
        self._spawn(self._microphone(), "user.microphone")

    async def leave(self) -> None:
        """Stop the microphone and listening, and leave the room."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.room.disconnect()
        await self._source.aclose()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the agent

    @property
    def agent(self) -> rtc.RemoteParticipant | None:
        """The agent's participant, once it joined."""
        return next(
            (
                p
                for p in self.room.remote_participants.values()
                if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
            ),
            None,
        )

    @property
    def agent_state(self) -> str | None:
        """The agent's published state (``listening``, ``thinking``, ``speaking``...)."""
        agent = self.agent
        return agent.attributes.get(AGENT_STATE) if agent is not None else None

    async def wait_for_agent(self, *, timeout: float = 30) -> rtc.RemoteParticipant:
        """Wait until the agent joined and its audio reaches the user."""
        await asyncio.wait_for(self._agent_track.wait(), timeout)
        agent = self.agent
        assert agent is not None
        await until(lambda: self.agent_state is not None, timeout=timeout)
        return agent

    def _on_track_subscribed(
        self,
        track: rtc.Track,
        publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        if (
            participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
            and track.kind == rtc.TrackKind.KIND_AUDIO
        ):
            self._spawn(self._listen(track), "user.listen")
            self._agent_track.set()

    async def _listen(self, track: rtc.Track) -> None:
        stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
        try:
            async for event in stream:
                frame = event.frame
                samples = np.frombuffer(frame.data, dtype=np.int16).astype(np.float64)
                rms = float(np.sqrt((samples**2).mean())) if len(samples) else 0.0
                duration = frame.samples_per_channel / frame.sample_rate
                self.frames.append(HeardFrame(at=time.time(), rms=rms, duration=duration))
        finally:
            await stream.aclose()

    def audio_started_after(self, instant: float) -> float | None:
        """When the first audible frame at or after ``instant`` arrived, if one did."""
        first = bisect.bisect_left(self.frames, instant, key=lambda f: f.at)
        return next((f.at for f in self.frames[first:] if f.rms > AUDIBLE_RMS), None)

    def agent_audible(self, *, within: float = 0.2) -> bool:
        """Whether an audible frame arrived in the last ``within`` seconds."""
        since = time.time() - within
        for frame in reversed(self.frames):
            if frame.at < since:
                return False
            if frame.rms > AUDIBLE_RMS:
                return True
        return False

    def agent_quiet(self) -> bool:
        """The agent listens and nothing of it is heard."""
        return self.agent_state == "listening" and not self.agent_audible()

    # -- what was said

    def _on_transcription(self, reader: rtc.TextStreamReader, identity: str) -> None:
        opened = time.time()

        async def read() -> None:
            try:
                text = await reader.read_all()
            except StreamError:  # cut by the user's own disconnect
                return
            attributes = reader.info.attributes or {}
            self.segments.append(
                Segment(
                    opened_at=opened,
                    closed_at=time.time(),
                    identity=identity,
                    segment_id=attributes.get("lk.segment_id", ""),
                    final=attributes.get("lk.transcription_final") == "true",
                    text=text,
                )
            )

        self._spawn(read(), "user.transcription")

    def _on_task_message(self, reader: rtc.TextStreamReader, identity: str) -> None:
        async def read() -> None:
            try:
                text = await reader.read_all()
            except StreamError:  # cut by the user's own disconnect
                return
            self.task_messages.append(TaskMessage(at=time.time(), message=json.loads(text)))
            # streams can finish out of order: keep them in the order the agent sent them
            self.task_messages.sort(key=lambda m: int(m.message.get("seq", 0)))

        self._spawn(read(), "user.task_message")

    def agent_lines(self) -> list[str]:
        """What the agent said, segment by segment, in order."""
        return [s.text for s in self.segments if s.identity != self.identity and s.final]

    def heard_lines(self) -> list[str]:
        """What the agent transcribed of the user's speech, in order."""
        return [s.text.strip() for s in self.segments if s.identity == self.identity and s.final]

    def agent_said(self, text: str) -> bool:
        """Whether the agent said something containing ``text``."""
        return any(text in line for line in self.agent_lines())

    def answered(self, line: str) -> bool:
        """The agent transcribed the user's ``line`` and said something after it."""
        heard = [
            i
            for i, s in enumerate(self.segments)
            if s.identity == self.identity and s.final and s.text.strip() == line
        ]
        return bool(heard) and any(
            s.identity != self.identity and s.final for s in self.segments[heard[-1] :]
        )

    def asked_to_pay(self) -> bool:
        """The agent asked to pay, and the user has not answered yet."""
        for segment in reversed(self.segments):
            if not segment.final:
                continue
            if segment.identity == self.identity:
                return False
            if PAYMENT_QUESTION in segment.text:
                return True
        return False

    def ended_tasks(self, function: str | None = None) -> list[dict[str, Any]]:
        """The ``task`` of each ``ended`` message (of ``function``'s calls), in order."""
        return [
            m.message["task"]
            for m in self.task_messages
            if m.message.get("event") == "ended"
            and (function is None or m.message["task"].get("function") == function)
        ]

    async def rpc(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Call ``method`` on the agent's participant; its decoded answer."""
        agent = self.agent
        assert agent is not None, "the agent has not joined"
        answer = await self.room.local_participant.perform_rpc(
            destination_identity=agent.identity, method=method, payload=json.dumps(payload)
        )
        return dict(json.loads(answer))

    async def send_chat(self, text: str) -> None:
        """Type ``text`` to the agent (the ``lk.chat`` text stream its room input reads)."""
        await self.room.local_participant.send_text(text, topic=CHAT_TOPIC)

    # -- speaking

    async def say(self, line: str) -> None:
        """Say ``line`` into the microphone; returns once it has been played out."""
        voice = speak(line)
        resampler = rtc.AudioResampler(voice.sample_rate, SAMPLE_RATE, num_channels=1)
        pcm = bytearray()
        for frame in [*resampler.push(bytearray(voice.pcm)), *resampler.flush()]:
            pcm += frame.data.tobytes()
        width = _FRAME_SAMPLES * 2
        pcm += bytes(-len(pcm) % width)
        frames = deque(
            rtc.AudioFrame(pcm[i : i + width], SAMPLE_RATE, 1, _FRAME_SAMPLES)
            for i in range(0, len(pcm), width)
        )
        said = _Line(frames)
        self._lines.append(said)
        self.lines_said.append((time.time(), line))
        await said.spoken.wait()

    async def _microphone(self) -> None:
        # a microphone sends audio all the time: the lines, and silence in between; the
        # source's short queue paces the capture in real time
        silence = rtc.AudioFrame(bytes(_FRAME_SAMPLES * 2), SAMPLE_RATE, 1, _FRAME_SAMPLES)
        while True:
            line = self._lines[0] if self._lines else None
            if line is None:
                await self._source.capture_frame(silence)
                continue
            await self._source.capture_frame(line.frames.popleft())
            if not line.frames:
                self._lines.popleft()
                line.spoken.set()


async def until(predicate: Callable[[], bool], *, timeout: float, what: str = "") -> None:
    """Wait until ``predicate()`` holds (checked every 50 ms)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what or predicate}")
        await asyncio.sleep(0.05)


async def until_quiet_for(
    quiet: Callable[[], bool], seconds: float, *, timeout: float = 20
) -> None:
    """Wait until ``quiet()`` has held for ``seconds`` in a row, as a person would before
    speaking: a reply the agent starts meanwhile is heard out first."""
    deadline = time.monotonic() + timeout
    while True:
        await until(quiet, timeout=max(deadline - time.monotonic(), 0.1), what="a quiet agent")
        await asyncio.sleep(seconds)
        if quiet():
            return


async def converse(
    user: RoomUser,
    *,
    quiet: Callable[[], bool] | None = None,
    reaction_time: float = REACTION_TIME,
    settle: float = SETTLE_TIME,
    answer_timeout: float = 20,
) -> None:
    """The offline demo's conversation, said by ``user`` in the room.

    The user says the demo's lines in turn, each once the agent has been quiet for
    ``reaction_time``; agrees to pay whenever the agent has just asked; once the agent
    said it emailed the confirmation, asks to cancel the hotel, and waits to hear that
    the hotel search is cancelled.

    Args:
        user: The user, in the room with the agent.
        quiet: More that must hold for the agent to count as quiet (default: nothing).
        reaction_time: How long the user waits, once the agent is quiet, to speak.
        settle: How long the user waits, once the agent is in the room, before the
            first line.
        answer_timeout: How long the user waits for an answer to a line.
    """

    def agent_quiet() -> bool:
        return user.agent_quiet() and (quiet is None or quiet())

    lines = list(USER_LINES)
    await asyncio.sleep(settle)

    def next_line() -> str | None:
        if user.asked_to_pay():
            return YES_LINE
        return lines.pop(0) if lines else None

    async def say(choose: Callable[[], str | None]) -> bool:
        await until_quiet_for(agent_quiet, reaction_time)
        if (line := choose()) is None:
            return False
        await user.say(line)
        await until(
            lambda: agent_quiet() and user.answered(line),
            timeout=answer_timeout,
            what=f"an answer to {line!r}",
        )
        return True

    def emailed() -> bool:
        return user.agent_said("emailed")

    while lines or not emailed():
        if not await say(next_line):
            await until(
                lambda: emailed() or user.asked_to_pay(),
                timeout=answer_timeout,
                what="the booking's end",
            )
    await say(lambda: CANCEL_LINE)
    await until(
        lambda: user.agent_said("hotel search is cancelled"),
        timeout=answer_timeout,
        what="the hotel's cancellation",
    )
