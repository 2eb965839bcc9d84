"""When a deferred reply may speak, with simulated speech in and out.

These run the session's real audio pipeline (VAD, STT, endpointing, TTS playout and
interruptions) with scripted signals; audio plays in real time, so texts are short.
"""

from __future__ import annotations

import asyncio

from livekit.plugins.asynctools.testing import Reply, ScriptedLLM, eventually
from livekit.plugins.asynctools.testing.audio import voice_session

from .travel import Flights, Gates, TravelAgent, call, respond_to, results_requests, weather_tool

LONG_UPDATE = "Update: " + "still working on it, " * 4 + "almost there."


def user_committed(requests_items: list, text: str) -> bool:  # type: ignore[type-arg]
    return any(
        getattr(i, "role", None) == "user" and i.text_content == text for i in requests_items
    )


async def test_a_result_waits_until_the_user_has_finished_and_been_answered() -> None:
    """An update lands while the user is speaking: nothing is said over them; their turn
    is answered first, then the update is spoken."""
    gates = Gates()
    model = ScriptedLLM(
        responder=respond_to(
            {
                "book": call("book_flight", "c1", destination="Tokyo"),
                "what time is it": Reply(text="It is noon."),
            }
        )
    )
    async with voice_session(TravelAgent(tools=[Flights(gates)]), llm=model) as v:
        await v.user.say("book")
        await v.log.wait_for(lambda log: "ack c1" in log.heard)
        await v.user.start_speaking()
        gates.open("found")
        await asyncio.sleep(0.3)
        asked_while_speaking = len(results_requests(model.requests))
        await v.user.stop_speaking()
        v.user.transcribe("what time is it")
        await v.log.wait_for(lambda log: "Update: c1_update_1" in log.heard)

    assert asked_while_speaking == 0
    assert v.log.heard == ["ack c1", "It is noon.", "Update: c1_update_1"]
    assert user_committed(results_requests(model.requests)[0].items, "what time is it")


async def test_a_late_transcript_still_counts_as_the_users_turn() -> None:
    """The STT's transcript arrives well after the user fell silent (the 1.5 design spoke
    in that gap and was cut off): the reply waits for the turn, then speaks in full."""
    gates = Gates()
    model = ScriptedLLM(
        responder=respond_to(
            {
                "book": call("book_flight", "c1", destination="Tokyo"),
                "and a hotel": Reply(text="Noted."),
            }
        )
    )
    async with voice_session(TravelAgent(tools=[Flights(gates)]), llm=model) as v:
        await v.user.say("book")
        await v.log.wait_for(lambda log: "ack c1" in log.heard)
        await v.user.start_speaking()
        gates.open("found")
        await v.user.stop_speaking()
        await asyncio.sleep(0.4)  # silence, no transcript yet
        v.user.transcribe("and a hotel")
        await v.log.wait_for(lambda log: "Update: c1_update_1" in log.heard)

    assert v.log.heard == ["ack c1", "Noted.", "Update: c1_update_1"]
    assert not any(line.interrupted for line in v.log.lines)
    assert len(results_requests(model.requests)) == 1


async def test_a_deferred_reply_the_user_interrupts_is_given_again() -> None:
    """The user cuts off the reply that speaks a result: after their turn is answered,
    the result is spoken again, in full."""
    gates = Gates()
    replies = iter([Reply(text=LONG_UPDATE), Reply(text="Update again: c1_update_1")])

    def respond(req):  # type: ignore[no-untyped-def]
        if req.last_item.type == "message" and req.mentions("New results arrived"):
            return next(replies)
        return respond_to(
            {
                "book": call("book_flight", "c1", destination="Tokyo"),
                "wait": Reply(text="Yes?"),
            }
        )(req)

    model = ScriptedLLM(responder=respond)
    async with voice_session(TravelAgent(tools=[Flights(gates)]), llm=model) as v:
        await v.user.say("book")
        await v.log.wait_for(lambda log: "ack c1" in log.heard)
        gates.open("found")
        await eventually(lambda: LONG_UPDATE in v.tts.texts)
        await eventually(lambda: v.session.agent_state == "speaking")
        await asyncio.sleep(0.1)
        await v.user.say("wait", duration=0.15)
        await v.log.wait_for(lambda log: "Update again: c1_update_1" in log.heard)

    first, again = results_requests(model.requests)
    assert "c1_update_1" in first.output_ids() and "c1_update_1" in again.output_ids()
    interrupted = [line for line in v.log.lines if line.interrupted]
    assert len(interrupted) == 1 and LONG_UPDATE.startswith(interrupted[0].text)
    assert v.log.heard[-2:] == ["Yes?", "Update again: c1_update_1"]


async def test_a_result_waits_while_the_users_turn_runs_a_tool() -> None:
    """The user's turn is answered by a tool call: while that tool runs (core counts the
    agent as idle then), a pending update is not spoken; the tool's answer comes first."""
    gates = Gates()
    check_weather, weather_running = weather_tool(gates)

    model = ScriptedLLM(
        responder=respond_to(
            {
                "book": call("book_flight", "c1", destination="Tokyo"),
                "weather": call("check_weather", "w1", city="Tokyo"),
            }
        )
    )
    agent = TravelAgent(tools=[Flights(gates), check_weather])
    async with voice_session(agent, llm=model) as v:
        await v.user.say("book")
        await v.log.wait_for(lambda log: "ack c1" in log.heard)
        await v.user.start_speaking()
        gates.open("found")
        await v.user.stop_speaking()
        v.user.transcribe("weather")
        await weather_running.wait()
        await asyncio.sleep(0.3)
        asked_while_the_tool_ran = len(results_requests(model.requests))
        gates.open("weather")
        await v.log.wait_for(lambda log: "Update: c1_update_1" in log.heard)

    assert asked_while_the_tool_ran == 0
    assert v.log.heard == ["ack c1", "ack w1", "Update: c1_update_1"]
