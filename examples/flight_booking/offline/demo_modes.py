"""How the offline demo plays its conversation in each mode, and what each mode checks.

- pipeline: the user's lines are synthesized speech played into the session's
  microphone in real time; Silero VAD hears them, the OpenAI STT client sends them to
  the server's transcription endpoint, the OpenAI LLM and TTS clients do the rest;
- realtime: the OpenAI realtime model client on the server's realtime websocket; the
  user's turns arrive as OpenAI's server-side turn detection reports them;
- gemini: the Gemini Live client (livekit-plugins-google, google-genai) on the server's
  Live API websocket over TLS; the user's turns arrive as Gemini's activity detection
  reports them.

Each ``run_*`` gives :func:`~demo_conversation.converse` the mode's way of saying a line
and returns what went wrong: the conversation's outcome problems and the mode's own.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from agent import build_session
from demo_conversation import (
    CANCEL_LINE,
    REACTION_TIME,
    USER_LINES,
    YES_LINE,
    answered,
    converse,
    until,
    until_quiet_for,
)
from demo_outcome import outcome_problems
from demo_transcript import Transcript, watch
from flights import TravelBackend
from openai_server import LocalOpenAIServer
from user_voice import speak

from livekit.plugins.asynctools.testing.audio import RealTimeSpeaker, ScriptedMicrophone


def _travel_backend(speed: float) -> TravelBackend:
    # the flight is still being booked when the user asks for it again
    return TravelBackend(search_latency=4.0, booking_latency=8.0, hotel_latency=30.0, speed=speed)


async def run_pipeline(
    server: LocalOpenAIServer, transcript: Transcript, *, vad: Any = None, speed: float = 1.0
) -> list[str]:
    """Play the conversation on the pipeline session; returns what went wrong.

    The user speaks: each line is synthesized speech played into the session's
    microphone in real time, heard by the VAD and transcribed by the OpenAI STT client
    through the local server. The user speaks once the agent has answered and is quiet.

    Args:
        server: The running local server (its scenario sets how long speech lasts).
        transcript: Where the lines go.
        vad: The pipeline's VAD (default: Silero, as in a real run).
        speed: Backend speed-up.
    """
    backend = _travel_backend(speed)
    session, microphone = pipeline_session(
        server, transcript, lines=[*USER_LINES, YES_LINE, CANCEL_LINE], vad=vad
    )

    async def say(choose: Any) -> bool:
        await until_quiet_for(lambda: session.agent_state == "listening", REACTION_TIME)
        if (line := choose()) is None:
            return False
        transcript.add("user", line)
        await speak_into(microphone, line)
        await until(
            lambda: session.agent_state == "listening" and answered(session, line), timeout=15
        )
        return True

    await converse(session, backend, say)
    problems = outcome_problems(session, backend)
    if unanswered := [r for r in server.requests if r.rule is None and "completions" in r.path]:
        problems.append(f"{len(unanswered)} chat requests matched no rule")
    return problems


def pipeline_session(
    server: LocalOpenAIServer, transcript: Transcript, *, lines: list[str], vad: Any = None
) -> tuple[Any, ScriptedMicrophone]:
    """The agent's pipeline session on ``server``, its microphone and speaker simulated.

    The server learns to transcribe the speech of ``lines``; the session is not started.

    Args:
        server: The running local server.
        transcript: Where the session's lines go.
        lines: What the user will say.
        vad: The pipeline's VAD (default: Silero, as in a real run).

    Returns:
        The session and the microphone the user speaks into.
    """
    session = build_session(mode="pipeline", base_url=server.base_url, api_key="offline", vad=vad)
    microphone = ScriptedMicrophone()
    session.input.audio = microphone
    session.output.audio = RealTimeSpeaker()
    watch(session, transcript)
    for line in lines:
        voice = speak(line)
        server.scenario.speech.learn(line, voice.pcm, voice.sample_rate)
    return session, microphone


async def speak_into(microphone: ScriptedMicrophone, line: str) -> None:
    """Say ``line`` into the microphone; returns once it has been spoken.

    Args:
        microphone: The session's simulated microphone.
        line: What the user says, synthesized by the user's voice.
    """
    voice = speak(line)
    await microphone.say(voice.pcm, sample_rate=voice.sample_rate)


async def run_realtime(
    server: LocalOpenAIServer, transcript: Transcript, *, speed: float = 1.0
) -> list[str]:
    """Play the conversation on the realtime session; returns what went wrong.

    The agent runs on the real ``openai.realtime.RealtimeModel``, connected to the local
    server's realtime websocket. The user speaks as OpenAI's server-side VAD and
    transcription report it (``server.realtime.user_says``), once the agent has answered
    and is quiet.

    Args:
        server: The running local server (its scenario sets how long speech lasts).
        transcript: Where the lines go.
        speed: Backend speed-up.
    """
    realtime = server.realtime
    first_response = len(realtime.responses)
    first_event = len(realtime.events)
    backend = _travel_backend(speed)
    session = build_session(mode="realtime", base_url=server.base_url, api_key="offline")
    await _converse_by_voice(
        session,
        backend,
        transcript,
        server=server,
        model_busy=lambda: realtime.response_active,
        user_says=realtime.user_says,
    )

    problems = outcome_problems(session, backend)
    responses = realtime.responses[first_response:]
    if unanswered := [r for r in responses if r.rule is None]:
        problems.append(f"{len(unanswered)} realtime responses matched no rule")
    events = realtime.events[first_event:]
    if busy := [
        e for e in events if e.type == "response.create" and (e.response_active or e.user_speaking)
    ]:
        problems.append(f"{len(busy)} replies were asked for while the conversation was busy")
        problems += [_describe_busy(e) for e in busy]
    return problems


def _describe_busy(event: Any) -> str:
    """Why a reply asked for while the conversation was busy was refused, and what for."""
    why = "a response was active" if event.response_active else "the user was speaking"
    instructions = (event.payload.get("response") or {}).get("instructions") or ""
    what = instructions.splitlines()[0][:80] if instructions else "a reply without instructions"
    return f"  response.create while {why}: {what}"


async def run_gemini(
    server: LocalOpenAIServer, transcript: Transcript, *, speed: float = 1.0
) -> list[str]:
    """Play the conversation on the Gemini Live session; returns what went wrong.

    The agent runs on the real ``google.realtime.RealtimeModel`` (google-genai), connected
    over TLS to the local server's Live API websocket, which it trusts through
    ``SSL_CERT_FILE``. The user speaks as Gemini's activity detection and input
    transcription report it (``server.gemini.user_says``), once the agent is quiet.

    Args:
        server: The running local server (its scenario sets how long speech lasts).
        transcript: Where the lines go.
        speed: Backend speed-up.
    """
    live = server.gemini
    first_turn = len(live.turns)
    backend = _travel_backend(speed)
    # google-genai reads it when its client is made, as the session starts
    os.environ["SSL_CERT_FILE"] = server.certificate.ca_file
    session = build_session(mode="gemini", base_url=server.gemini_base_url, api_key="offline")
    await _converse_by_voice(
        session,
        backend,
        transcript,
        server=server,
        model_busy=lambda: live.generating,
        user_says=live.user_says,
    )

    problems = outcome_problems(session, backend)
    if failed := [t for t in live.turns[first_turn:] if t.status == "failed"]:
        problems.append(f"{len(failed)} Gemini turns matched no rule")
    return problems


async def _converse_by_voice(
    session: Any,
    backend: TravelBackend,
    transcript: Transcript,
    *,
    server: LocalOpenAIServer,
    model_busy: Callable[[], bool],
    user_says: Callable[..., Awaitable[None]],
) -> None:
    """Play the conversation on a speech-to-speech model's session: the user says each
    line through the model's own server (``user_says``) once the agent is quiet and the
    model is not busy, and waits until it was answered; the model's client is closed at
    the end (its own HTTP session, outside a job)."""
    session.output.audio = RealTimeSpeaker()
    watch(session, transcript)

    def quiet() -> bool:
        return bool(session.agent_state == "listening" and not model_busy())

    async def say(choose: Any) -> bool:
        await until_quiet_for(quiet, REACTION_TIME)
        if (line := choose()) is None:
            return False
        transcript.add("user", line)
        await user_says(line, duration=len(line) * server.scenario.seconds_per_char)
        await until(lambda: quiet() and answered(session, line), timeout=15)
        return True

    try:
        await converse(session, backend, say)
    finally:
        await session.llm.aclose()
