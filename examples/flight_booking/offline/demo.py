"""Offline demo: the flight agent through the real livekit-plugins-openai clients.

Plays one conversation on each of the agent's sessions at once, each against its own
local OpenAI-protocol server scripted by the flight scenario:

- pipeline: the user's lines are synthesized speech played into the session's
  microphone in real time; Silero VAD hears them, the OpenAI STT client sends them to
  the server's transcription endpoint, the OpenAI LLM and TTS clients do the rest;
- realtime: the OpenAI realtime model client on the server's realtime websocket; the
  user's turns arrive as OpenAI's server-side turn detection reports them;
- gemini: the Gemini Live client (livekit-plugins-google, google-genai) on the server's
  Live API websocket over TLS; the user's turns arrive as Gemini's activity detection
  reports them.

``--modes pipeline,realtime`` plays only those (default: all three).

The agent's speech plays on a simulated speaker in real time. For each mode it prints a
timestamped transcript of what the user hears and of each background task's start,
updates and end. Exits 1 if a conversation did not reach its outcome (flight booked
and confirmed by email once, hotel search cancelled on request, every request answered
by the scenario, no realtime reply asked for while the conversation was busy).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from agent import FlightAgent, build_session  # noqa: E402
from flights import TravelBackend  # noqa: E402
from openai_server import LocalOpenAIServer  # noqa: E402
from scenario import flight_scenario  # noqa: E402
from user_voice import speak  # noqa: E402

from livekit.plugins.asynctools import TaskStarted, TaskUpdated, task_events  # noqa: E402
from livekit.plugins.asynctools.testing.audio import (  # noqa: E402
    RealTimeSpeaker,
    ScriptedMicrophone,
)

USER_LINES = [
    "Book a flight from Paris to Tokyo on December 3rd.",
    "Also reserve a hotel for 4 nights.",
    "Book that flight again.",
    "No. What's running?",
]
CANCEL_LINE = "Cancel the hotel."
YES_LINE = "Yes, pay it."
PAYMENT_QUESTION = "Shall I pay"
FILLER_LINE = "Still booking your flight"
# how long the user waits, once the agent is quiet, before speaking (and checks again)
REACTION_TIME = 0.3


class Transcript:
    """Timestamped lines of one conversation, from the moment it was created."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()
        self.lines: list[str] = []

    def add(self, who: str, text: str) -> None:
        self.lines.append(f"[{time.monotonic() - self._t0:5.2f}s] {who:<6} {text}")


def _watch(session: Any, transcript: Transcript) -> None:
    def on_item(ev: Any) -> None:
        item = ev.item
        if getattr(item, "role", None) == "user" and item.text_content:
            transcript.add("heard", item.text_content)
        if getattr(item, "role", None) == "assistant" and item.text_content:
            cut = " (interrupted)" if getattr(item, "interrupted", False) else ""
            transcript.add("agent", item.text_content + cut)

    # the plugin's typed task events, the same on every livekit-agents release
    events = task_events(session)

    def on_start(ev: TaskStarted) -> None:
        limit = f", times out after {ev.timeout:g} s" if ev.timeout is not None else ""
        transcript.add("task", f"{ev.function_name} started ({ev.call_id}{limit})")

    events.on("task_started", on_start)

    def on_update(ev: TaskUpdated) -> None:
        if ev.update_id == ev.call_id:
            return  # the call's own answer: the agent says it at once
        progress = ev.progress.describe() if ev.delivery != "silent" else " (silent)"
        transcript.add("task", f"{ev.update_id}: {ev.message.splitlines()[0]}{progress}")

    events.on("task_updated", on_update)
    events.on(
        "task_ended",
        lambda ev: (
            transcript.add("task", f"{ev.call_id} ended: {ev.status}")
            if ev.record_id != ev.call_id
            else None
        ),
    )
    session.on("conversation_item_added", on_item)


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
    # the flight is still being booked when the user asks for it again
    backend = TravelBackend(
        search_latency=4.0, booking_latency=8.0, hotel_latency=30.0, speed=speed
    )
    session, microphone = pipeline_session(
        server, transcript, lines=[*USER_LINES, YES_LINE, CANCEL_LINE], vad=vad
    )

    async def say(choose: Any) -> bool:
        await _until_quiet_for(lambda: session.agent_state == "listening", REACTION_TIME)
        if (line := choose()) is None:
            return False
        transcript.add("user", line)
        await speak_into(microphone, line)
        await _until(
            lambda: session.agent_state == "listening" and _answered(session, line), timeout=15
        )
        return True

    await _converse(session, backend, say)
    problems = _outcome_problems(session, backend)
    if unanswered := [r for r in server.requests if r.rule is None and "completions" in r.path]:
        problems.append(f"{len(unanswered)} chat requests matched no rule")
    return problems


def pipeline_session(
    server: LocalOpenAIServer, transcript: Transcript, *, lines: list[str], vad: Any = None
) -> tuple[Any, ScriptedMicrophone]:
    """The agent's pipeline session on ``server``, its microphone and speaker simulated.

    The server learns to transcribe the speech of ``lines``; the session is not started.
    """
    session = build_session(mode="pipeline", base_url=server.base_url, api_key="offline", vad=vad)
    microphone = ScriptedMicrophone()
    session.input.audio = microphone
    session.output.audio = RealTimeSpeaker()
    _watch(session, transcript)
    for line in lines:
        voice = speak(line)
        server.scenario.speech.learn(line, voice.pcm, voice.sample_rate)
    return session, microphone


async def speak_into(microphone: ScriptedMicrophone, line: str) -> None:
    """Say ``line`` into the microphone; returns once it has been spoken."""
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
    # the flight is still being booked when the user asks for it again
    backend = TravelBackend(
        search_latency=4.0, booking_latency=8.0, hotel_latency=30.0, speed=speed
    )
    session = build_session(mode="realtime", base_url=server.base_url, api_key="offline")
    session.output.audio = RealTimeSpeaker()
    _watch(session, transcript)

    def quiet() -> bool:
        return session.agent_state == "listening" and not realtime.response_active

    async def say(choose: Any) -> bool:
        await _until_quiet_for(quiet, REACTION_TIME)
        if (line := choose()) is None:
            return False
        transcript.add("user", line)
        await realtime.user_says(line, duration=len(line) * server.scenario.seconds_per_char)
        await _until(lambda: quiet() and _answered(session, line), timeout=15)
        return True

    try:
        await _converse(session, backend, say)
    finally:
        await session.llm.aclose()  # the model's own HTTP session, outside a job

    problems = _outcome_problems(session, backend)
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
    backend = TravelBackend(
        search_latency=4.0, booking_latency=8.0, hotel_latency=30.0, speed=speed
    )
    # google-genai reads it when its client is made, as the session starts
    os.environ["SSL_CERT_FILE"] = server.certificate.ca_file
    session = build_session(mode="gemini", base_url=server.gemini_base_url, api_key="offline")
    session.output.audio = RealTimeSpeaker()
    _watch(session, transcript)

    def quiet() -> bool:
        return session.agent_state == "listening" and not live.generating

    async def say(choose: Any) -> bool:
        await _until_quiet_for(quiet, REACTION_TIME)
        if (line := choose()) is None:
            return False
        transcript.add("user", line)
        await live.user_says(line, duration=len(line) * server.scenario.seconds_per_char)
        await _until(lambda: quiet() and _answered(session, line), timeout=15)
        return True

    try:
        await _converse(session, backend, say)
    finally:
        await session.llm.aclose()

    problems = _outcome_problems(session, backend)
    if failed := [t for t in live.turns[first_turn:] if t.status == "failed"]:
        problems.append(f"{len(failed)} Gemini turns matched no rule")
    return problems


def _describe_busy(event: Any) -> str:
    """Why a reply asked for while the conversation was busy was refused, and what for."""
    why = "a response was active" if event.response_active else "the user was speaking"
    instructions = (event.payload.get("response") or {}).get("instructions") or ""
    what = instructions.splitlines()[0][:80] if instructions else "a reply without instructions"
    return f"  response.create while {why}: {what}"


async def _converse(session: Any, backend: TravelBackend, say: Any) -> None:
    """The conversation itself, the same in both modes.

    ``say(choose)`` is the user: once the agent has been quiet a moment, they say the
    line ``choose()`` gives (nothing for None). They say their lines in turn, and agree
    to pay whenever the agent has just asked.
    """
    await session.start(FlightAgent(backend=backend))
    lines = list(USER_LINES)

    def next_line() -> str | None:
        if _asked_to_pay(session):
            return YES_LINE
        return lines.pop(0) if lines else None

    try:
        while lines or not backend.emails:
            if not await say(next_line):
                await _until(lambda: bool(backend.emails) or _asked_to_pay(session), timeout=20)
        await _until(lambda: _heard(session, "emailed"), timeout=10)
        await say(lambda: CANCEL_LINE)
        await _until(lambda: _heard(session, "hotel search is cancelled"), timeout=10)
    finally:
        await session.aclose()


def _asked_to_pay(session: Any) -> bool:
    """The agent asked to pay, and the user has not answered yet."""
    for item in reversed(session.history.items):
        role = getattr(item, "role", None)
        if role == "user":
            return False
        if role == "assistant" and PAYMENT_QUESTION in (item.text_content or ""):
            return True
    return False


def _outcome_problems(session: Any, backend: TravelBackend) -> list[str]:
    """What the conversation missed: the booking, the email, the cancelled hotel, and
    each feature the agent shows (progress, a silent update, the payment question, the
    filler, the hotel's timeout)."""
    problems = []
    items = session.history.items
    # (id, text) of what the model was given: tool outputs, or (where the provider takes
    # no output under an id it never issued, as Gemini) messages naming the call
    records = [(i.call_id, i.output) for i in items if i.type == "function_call_output"]
    records += [
        (found.group(1), text)
        for i in items
        if getattr(i, "role", None) == "user"
        and (
            found := re.match(
                r"Background tool `\w+` \(call_id (\S+)\)", text := i.text_content or ""
            )
        )
    ]
    said = [i.text_content or "" for i in items if getattr(i, "role", None) == "assistant"]
    if len(backend.emails) != 1:
        problems.append(f"expected one confirmation email, got {backend.emails}")
    if not any(call_id.endswith("_cancelled") for call_id, _ in records):
        problems.append("the hotel search was not recorded as cancelled")
    if not any("(50% done, stage: payment)" in output for _, output in records):
        problems.append("no update carried the flight's structured progress")
    if not any("locked" in output for _, output in records) or any("locked" in s for s in said):
        problems.append("the locked fare was not kept for the model alone")
    if not any(s.startswith(PAYMENT_QUESTION) for s in said):
        problems.append("the agent did not ask before paying")
    if not any(s.startswith(FILLER_LINE) for s in said):
        problems.append("no filler was said while the flight was booked")
    return problems


def _answered(session: Any, line: str) -> bool:
    """The user's ``line`` was transcribed and committed, and the agent answered it."""
    items = session.history.items
    said = [
        i
        for i, item in enumerate(items)
        if getattr(item, "role", None) == "user" and (item.text_content or "").strip() == line
    ]
    return bool(said) and any(getattr(i, "role", None) == "assistant" for i in items[said[-1] :])


def _heard(session: Any, text: str) -> bool:
    return any(
        getattr(i, "role", None) == "assistant" and text in (i.text_content or "")
        for i in session.history.items
    )


async def _until_quiet_for(quiet: Any, seconds: float, *, timeout: float = 15) -> None:
    """Wait until ``quiet()`` has held for ``seconds`` in a row, as a person would before
    speaking: a reply the agent starts meanwhile is heard out first."""
    deadline = time.monotonic() + timeout
    while True:
        await _until(quiet, timeout=max(deadline - time.monotonic(), 0.1))
        await asyncio.sleep(seconds)
        if quiet():
            return


async def _until(predicate: Any, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the conversation did not get there in time")
        await asyncio.sleep(0.05)


async def _play(
    title: str, server: LocalOpenAIServer, run: Any, transcript: Transcript
) -> list[str]:
    """Run one mode and print its transcript once it is over."""
    try:
        problems: list[str] = await run
    except TimeoutError as e:
        problems = [str(e)]
    print(f"== {title} ==", *transcript.lines, sep="\n")
    paths = sorted({r.path for r in server.requests})
    sockets = sorted({f"ws://{c.host}{c.path}" for c in server.realtime.connections})
    sockets += sorted(
        {f"wss://{c.host}/ws/...BidiGenerateContent" for c in server.gemini.connections}
    )
    print(f"\n{len(server.requests)} HTTP requests to {paths}, websockets to {sockets}")
    print(f"all to {server.base_url}\n", flush=True)
    return [f"{title.split()[0]} mode: {p}" for p in problems]


MODES = {
    "pipeline": ("pipeline mode (Silero VAD; OpenAI STT, LLM and TTS clients)", run_pipeline),
    "realtime": (
        "realtime mode (OpenAI realtime model client, server-side turn detection)",
        run_realtime,
    ),
    "gemini": ("gemini mode (Gemini Live client, google-genai over TLS)", run_gemini),
}


async def main(modes: list[str]) -> int:
    """Run the demo, the ``modes`` at once; 0 when every one reached its outcome."""
    async with contextlib.AsyncExitStack() as stack:
        servers = {
            mode: await stack.enter_async_context(
                LocalOpenAIServer(flight_scenario(seconds_per_char=0.01))
            )
            for mode in modes
        }
        print(f"Playing the flight-booking conversation on {', '.join(modes)} at once...\n")
        transcripts = {mode: Transcript() for mode in modes}
        outcomes = await asyncio.gather(
            *(
                _play(
                    MODES[mode][0],
                    servers[mode],
                    MODES[mode][1](
                        servers[mode],
                        transcripts[mode],
                        **({} if mode == "pipeline" else {"speed": 2.0}),
                    ),
                    transcripts[mode],
                )
                for mode in modes
            )
        )
    problems = [p for outcome in outcomes for p in outcome]
    if problems:
        print("FAILED:\n- " + "\n- ".join(problems))
        return 1
    print(f"OK, {', '.join(modes)}: flight booked and emailed, hotel search cancelled on request.")
    return 0


def _modes(value: str) -> list[str]:
    modes = [m.strip() for m in value.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        raise argparse.ArgumentTypeError(f"choose among {', '.join(MODES)}")
    return list(dict.fromkeys(modes))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--modes",
        type=_modes,
        default=list(MODES),
        help="comma-separated modes to play at once (default: %(default)s)",
    )
    sys.exit(asyncio.run(main(parser.parse_args().modes)))
