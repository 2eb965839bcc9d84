"""Offline demo: the flight agent through the real livekit-plugins-openai clients.

Plays one conversation on each of the agent's sessions at once (pipeline, realtime and
gemini; how each is played is in ``demo_modes``), each against its own local
OpenAI-protocol server scripted by the flight scenario.

``--modes pipeline,realtime`` plays only those (default: all three).

The agent's speech plays on a simulated speaker in real time. For each mode it prints a
timestamped transcript of what the user hears and of each background task's start,
updates and end. Exits 1 if a conversation did not reach its outcome (flight booked
and confirmed by email once, hotel search cancelled on request, every request answered
by the scenario, no realtime reply asked for while the conversation was busy).

Read on in ``demo_modes.py`` (how each mode plays the conversation), then
``demo_conversation.py`` (the user's side, the same in every mode), ``demo_outcome.py``
(what the conversation must reach) and ``demo_transcript.py`` (what is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from demo_conversation import (  # noqa: E402
    CANCEL_LINE,
    FILLER_LINE,
    PAYMENT_QUESTION,
    REACTION_TIME,
    USER_LINES,
    YES_LINE,
)
from demo_conversation import until as _until  # noqa: E402
from demo_modes import (  # noqa: E402
    pipeline_session,
    run_gemini,
    run_pipeline,
    run_realtime,
    speak_into,
)
from demo_transcript import Transcript, print_transcript  # noqa: E402
from openai_server import LocalOpenAIServer  # noqa: E402
from scenario import flight_scenario  # noqa: E402

# the tests and the room's user import the conversation and the runners from here
__all__ = [
    "CANCEL_LINE",
    "FILLER_LINE",
    "MODES",
    "PAYMENT_QUESTION",
    "REACTION_TIME",
    "USER_LINES",
    "YES_LINE",
    "Transcript",
    "_until",
    "main",
    "pipeline_session",
    "run_gemini",
    "run_pipeline",
    "run_realtime",
    "speak_into",
]

MODES = {
    "pipeline": ("pipeline mode (Silero VAD; OpenAI STT, LLM and TTS clients)", run_pipeline),
    "realtime": (
        "realtime mode (OpenAI realtime model client, server-side turn detection)",
        run_realtime,
    ),
    "gemini": ("gemini mode (Gemini Live client, google-genai over TLS)", run_gemini),
}


async def main(modes: list[str]) -> int:
    """Run the demo, the ``modes`` at once; 0 when every one reached its outcome.

    Args:
        modes: Names from :data:`MODES`, each played on its own local server.

    Returns:
        The exit code: 0 when every mode reached its outcome, else 1.
    """
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


async def _play(
    title: str, server: LocalOpenAIServer, run: Any, transcript: Transcript
) -> list[str]:
    """Run one mode and print its transcript once it is over."""
    try:
        problems: list[str] = await run
    except TimeoutError as e:
        problems = [str(e)]
    print_transcript(title, server, transcript)
    return [f"{title.split()[0]} mode: {p}" for p in problems]


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
