"""Generated schedules of a real voice session: the text machine's rules, spoken.

The same hypothesis state machine as :mod:`tests.test_stateful_schedules` (the same
tools, rules and invariants), on a session with the real audio pipeline: the user speaks
through a scripted VAD and STT, the agent's replies are synthesized and played in real
time, and a user who speaks while the agent talks interrupts it. One rule more: the user
talks over a deferred reply (a barge-in), so interrupted replies, their re-delivery
(``MAX_REDELIVERIES``) and results recorded as not heard at close are all generated.

The invariants that matter most in voice are checked as the events happen: no deferred
reply is scheduled while the user speaks, and at most one is in flight at a time.

Examples per run come from ``ASYNCTOOLS_VOICE_FUZZ_EXAMPLES`` (default 12: audio plays
in real time, so an example takes about two seconds). A long run::

    ASYNCTOOLS_VOICE_FUZZ_EXAMPLES=1000 .nox/tests-agents-1-8-9/bin/pytest -s \\
        -p no:cacheprovider -p no:logging -o timeout=7200 tests/test_stateful_voice.py
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest
from hypothesis.stateful import precondition, rule

from livekit.agents import AgentSession
from livekit.plugins.asynctools import _compat
from livekit.plugins.asynctools.testing import Reply
from livekit.plugins.asynctools.testing.audio import VoiceSession, start_voice_session

from .test_stateful_schedules import (
    EXAMPLES,
    PLAIN_ERROR,
    Schedules,
    StepAgent,
    fuzz_settings,
    fuzz_summary,
    run_schedules,
)

VOICE_EXAMPLES = int(os.environ.get("ASYNCTOOLS_VOICE_FUZZ_EXAMPLES", "12"))
SECONDS_PER_CHAR = 0.008  # "Here is what happened." plays for 176 ms: long enough to cut
ENDPOINTING = 0.05  # silence that ends the user's turn
SPEECH = 0.06  # how long the user speaks
BARGE_IN_WAIT = 0.5  # how long the barge-in rule waits for a reply to talk over


class VoiceSchedules(Schedules):
    """One real voice session per example: every user turn is spoken."""

    voice: VoiceSession

    async def _start_session(self) -> AgentSession[Any]:
        self.voice = await start_voice_session(
            StepAgent(self.world),
            llm=self.model,
            seconds_per_char=SECONDS_PER_CHAR,
            endpointing_delay=ENDPOINTING,
            tools=self.world.session_tools() if self.two_toolsets else [],
        )
        return self.voice.session

    async def _user(self, text: str, reply: Reply) -> None:
        """The user says ``text``; the step ends once the turn is committed, the model was
        asked with it and the agent is quiet again (its answer spoken, or cut off)."""
        self.turns[text] = reply
        await self._settle_briefly()
        while await _compat.wait_for_handoff(self.session):
            await self._settle_briefly()
        asked, said = len(self.model.requests), len(self.session.history.items)
        await self.voice.user.say(text, duration=SPEECH)
        # the turn is committed as it was said (a next turn said before that would be
        # merged into it) and the model was asked with it
        while not (
            any(r.last_user_text() == text for r in self.model.requests[asked:])
            and any(
                i.type == "message" and i.role == "user" and i.text_content == text
                for i in self.session.history.items[said:]
            )
        ):
            await asyncio.sleep(0.005)
        await self._settle_briefly()
        await self._until_quiet()

    @precondition(lambda self: not self.closed)
    @rule()
    def user_talks_over_a_deferred_reply(self) -> None:
        """Once a deferred reply is playing (waiting at most ``BARGE_IN_WAIT``), the user
        speaks over it: the reply is interrupted and its outputs are given again later."""

        async def barge_in() -> bool:
            until = time.perf_counter() + BARGE_IN_WAIT
            while not self._reply_playing() and time.perf_counter() < until:
                await asyncio.sleep(0.005)
            over = self._reply_playing()
            await self._user(f"wait {len(self.steps)}", Reply(text="Sure."))
            return over

        self.steps.append(("barge in",))
        if self._run(barge_in()):
            EXAMPLES["barge-in over a reply"] += 1

    def _reply_playing(self) -> bool:
        return bool(self.in_flight) and self.session.agent_state == "speaking"


@pytest.mark.expected_log_errors(PLAIN_ERROR)
@pytest.mark.timeout(max(180.0, VOICE_EXAMPLES * 6.0))
def test_generated_voice_schedules_keep_every_call_and_result(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Spoken turns, barge-ins on deferred replies, and everything the text machine does:
    every call ends once with one record, every result is heard or recorded as not heard,
    no reply starts while the user speaks, and closing leaves nothing behind."""
    started = time.perf_counter()
    try:
        run_schedules(VoiceSchedules, fuzz_settings(VOICE_EXAMPLES, steps=12))
    finally:
        with capsys.disabled():
            print(f"\n[voice fuzz] {fuzz_summary()} in {time.perf_counter() - started:.0f} s")
