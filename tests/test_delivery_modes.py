"""Delivery modes (``idle``, ``silent``, ``now``) and delivery receipts.

A ``silent`` output is recorded for the model and never asks for a reply of its own; a
``now`` output cuts off the agent (never the user); a reply the user cuts off is given
again with a note of what they heard, and what no reply gave before the session ended is
recorded as never told.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from livekit.agents import AgentSession, function_tool, llm
from livekit.plugins.asynctools import (
    NOT_HEARD_RECORD,
    RECEIPT_KEY,
    REPLY_INTERRUPTED_NOTE,
    AsyncRunContext,
    AsyncToolset,
    BackgroundResult,
    ReplyEvent,
    task_events,
)
from livekit.plugins.asynctools.idle import USER_TURN_GRACE
from livekit.plugins.asynctools.testing import (
    LLMRequest,
    Reply,
    ScriptedLLM,
    ScriptedRealtimeModel,
    eventually,
    text_session,
)
from livekit.plugins.asynctools.testing.audio import voice_session

from .travel import (
    RESULTS_MARKER,
    Flights,
    Gates,
    TravelAgent,
    call,
    new_results,
    output_of,
    respond_to,
    results_requests,
)

STORY = "Once upon a time a small plane flew over the sea and over the hills to a far land."
LONG_UPDATE = "Update: " + "still working on it, " * 4 + "almost there."


def history_output_ids(session: AgentSession[Any]) -> list[str]:
    """The call ids of the function call outputs in the session history, in order."""
    return [i.call_id for i in session.history.items if i.type == "function_call_output"]


def receipt_of(session: AgentSession[Any], call_id: str) -> str | None:
    """The delivery receipt on the function call item ``call_id`` of the session history."""
    fnc_call = next(
        i for i in session.history.items if i.type == "function_call" and i.call_id == call_id
    )
    return fnc_call.extra.get(RECEIPT_KEY)


def instructions_of(req: LLMRequest) -> str:
    """The deferred-reply instructions a request carries."""
    texts = req.texts("system") + req.texts("developer")
    return next(t for t in reversed(texts) if RESULTS_MARKER in t)


def fare_watcher(gates: Gates) -> AsyncToolset:
    """`watch_fare`: answers now, records a silent update after `locked`, returns after
    `issued`."""

    @function_tool
    async def watch_fare(ctx: AsyncRunContext, route: str) -> str:
        """Watch the fare of a route and buy the ticket."""
        await ctx.update(f"Watching fares for {route}")
        await gates.wait("locked")
        await ctx.update("Fare locked at 192 euros", silent=True)
        await gates.wait("issued")
        return "Ticket issued: TK-192"

    return AsyncToolset(id="fares", tools=[watch_fare])


def gate_watcher(gates: Gates, *, urgent_result: bool) -> AsyncToolset:
    """`watch_gate`: answers now; after `changed`, a `now` update (or a `now` result)."""

    @function_tool
    async def watch_gate(ctx: AsyncRunContext, flight: str) -> Any:
        """Watch the departure gate of a flight."""
        await ctx.update(f"Watching the gate of {flight}")
        await gates.wait("changed")
        if urgent_result:
            return BackgroundResult("Gate changed to B12", delivery="now")
        await ctx.update("Gate changed to B12", delivery="now")
        await gates.wait("boarded")
        return "Boarded"

    return AsyncToolset(id="gates", tools=[watch_gate])


# silent


async def test_a_silent_update_is_in_the_chat_but_asks_for_no_reply() -> None:
    """A silent later update is in the model's next request (here the user's next turn)
    and nothing is said about it alone; the result's reply sees it, yet is asked to speak
    only the result."""
    gates = Gates()
    model = ScriptedLLM(responder=respond_to({"watch": call("watch_fare", "f1", route="PAR-TYO")}))
    async with text_session(TravelAgent(tools=[fare_watcher(gates)]), llm=model) as (session, log):
        await session.run(user_input="watch")
        gates.open("locked")
        await eventually(lambda: "f1_update_1" in history_output_ids(session))
        await asyncio.sleep(0.1)  # an idle update would be answered by now
        asked_for_the_silent_update = len(results_requests(model.requests))
        await session.run(user_input="anything new?")
        user_turn = model.requests[-1]
        gates.open("issued")
        await log.wait_for(lambda _: "Update: f1_finished" in log.heard)

    assert asked_for_the_silent_update == 0
    assert user_turn.last_user_text() == "anything new?"
    assert "Fare locked at 192 euros" in output_of(user_turn, "f1_update_1")
    (result_reply,) = results_requests(model.requests)
    assert result_reply.output_ids() == ["f1", "f1_update_1", "f1_finished"]
    assert new_results(result_reply) == ["f1_finished"]
    assert "f1_update_1" not in instructions_of(result_reply)
    assert log.heard == ["ack f1", "Sure.", "Update: f1_finished"]


@pytest.mark.parametrize("spelling", ["silent=True", 'delivery="silent"'])
async def test_a_silent_first_update_releases_the_turn_without_a_reply(spelling: str) -> None:
    """A tool whose first update is silent: the model is not asked to speak about the
    call (no request after the tool call), and the message is in the chat for its next
    turn: as the call's own output on 1.8 (core's ToolResult(reply_required=False)), as
    `<id>_update_0` before."""
    gates = Gates()

    @function_tool
    async def prefetch_offers(ctx: AsyncRunContext, city: str) -> str:
        """Prefetch hotel offers for a city."""
        if spelling == "silent=True":
            await ctx.update(f"Prefetching offers for {city}", silent=True)
        else:
            await ctx.update(f"Prefetching offers for {city}", delivery="silent")
        await gates.wait("done")
        return "12 offers"

    model = ScriptedLLM(
        responder=respond_to({"prefetch": call("prefetch_offers", "p1", city="Oslo")})
    )
    agent = TravelAgent(tools=[AsyncToolset(id="offers", tools=[prefetch_offers])])
    async with text_session(agent, llm=model) as (session, log):
        await session.run(user_input="prefetch")
        await asyncio.sleep(0.1)  # a reply to the tool output would be requested by now
        requests_after_the_call = len(model.requests)
        await session.run(user_input="anything new?")
        next_turn = model.requests[-1]

    assert requests_after_the_call == 1
    assert results_requests(model.requests) == []
    record = "p1" if hasattr(llm, "ToolResult") else "p1_update_0"
    assert "Prefetching offers for Oslo" in output_of(next_turn, record)
    assert log.heard == ["Sure."]


async def test_a_silent_update_reaches_a_realtime_model_without_a_response() -> None:
    """On a realtime model a silent update is added to the provider's conversation, no
    response is requested for it, and the model's next response can see it."""
    gates = Gates()
    model = ScriptedRealtimeModel(
        responder=respond_to({"watch": call("watch_fare", "f1", route="PAR-TYO")})
    )
    async with text_session(TravelAgent(tools=[fare_watcher(gates)]), llm=model) as (session, log):
        await session.run(user_input="watch")
        (provider,) = model.sessions
        responses_before = len(provider.reply_requests)
        gates.open("locked")
        await eventually(
            lambda: (
                "f1_update_1"
                in [i.call_id for i in provider.chat_ctx.items if i.type == "function_call_output"]
            )
        )
        await asyncio.sleep(0.1)  # an idle update would be answered by now
        responses_for_the_update = len(provider.reply_requests) - responses_before
        await session.run(user_input="anything new?")

    assert responses_for_the_update == 0
    assert not [
        r for r in provider.reply_requests if r.instructions and RESULTS_MARKER in r.instructions
    ]
    assert "Fare locked at 192 euros" in output_of(
        provider.reply_requests[-1].request, "f1_update_1"
    )
    assert provider.deleted_ids == []
    assert log.heard == ["ack f1", "Sure."]


# now


async def test_a_now_result_cuts_off_a_realtime_answer_in_progress() -> None:
    """On a realtime model, a `now` result that lands while the model is still answering
    the user cuts that answer off and is spoken at once, before the answer would have
    ended; the provider's conversation keeps the call's outputs."""
    gates = Gates()
    model = ScriptedRealtimeModel(
        responder=respond_to(
            {
                "watch": call("watch_gate", "w1", flight="LH123"),
                "story": Reply(text=STORY, delay=1.5),
            }
        )
    )
    toolset = gate_watcher(gates, urgent_result=True)
    async with text_session(TravelAgent(tools=[toolset]), llm=model) as (session, log):
        await session.run(user_input="watch")
        (provider,) = model.sessions
        story = session.generate_reply(user_input="story")
        await eventually(
            lambda: any(r.request.last_user_text() == "story" for r in provider.reply_requests)
        )
        loop = asyncio.get_running_loop()
        landed = loop.time()
        gates.open("changed")
        await log.wait_for(lambda _: "Update: w1_finished" in log.heard)
        spoken_after = loop.time() - landed
        await story

    assert spoken_after < 1.0  # the story would have taken 1.5 s
    assert story.interrupted
    assert STORY not in [line.text for line in log.lines if not line.interrupted]
    assert log.heard[-1] == "Update: w1_finished"
    # core drops the cut-off answer from the provider; the call's outputs all stay there
    remote = [i.call_id for i in provider.chat_ctx.items if i.type == "function_call_output"]
    assert remote[:2] == ["w1", "w1_finished"]


@pytest.mark.parametrize("urgent", ["update", "result"])
async def test_a_now_output_cuts_off_the_agent_and_is_spoken_at_once(urgent: str) -> None:
    """A `now` update (`ctx.update(..., delivery="now")`) or result
    (`BackgroundResult(..., delivery="now")`) lands while the agent tells a long,
    interruptible story: the story is cut off and the news is spoken right away."""
    gates = Gates()
    model = ScriptedLLM(
        responder=respond_to(
            {
                "watch": call("watch_gate", "w1", flight="LH123"),
                "story": Reply(text=STORY),
            }
        )
    )
    toolset = gate_watcher(gates, urgent_result=urgent == "result")
    async with voice_session(TravelAgent(tools=[toolset]), llm=model) as v:
        await v.user.say("watch", duration=0.1)
        await v.log.wait_for(lambda log: "ack w1" in log.heard)
        await v.user.say("story", duration=0.1)
        await eventually(lambda: STORY in v.tts.texts)
        await eventually(lambda: v.session.agent_state == "speaking")
        await asyncio.sleep(0.1)
        gates.open("changed")
        news = "Update: w1_update_1" if urgent == "update" else "Update: w1_finished"
        await v.log.wait_for(lambda log: news in log.heard)

    agent_lines = [line for line in v.log.lines if line.role == "assistant"]
    assert [line.text for line in agent_lines][-1] == news
    story = agent_lines[-2]
    assert story.interrupted and STORY.startswith(story.text)
    (cut_at,) = [position for position, cut in v.speaker.played if cut]
    assert cut_at < len(STORY) * v.tts.seconds_per_char / 2  # cut off, not played out
    (reply,) = results_requests(model.requests)
    assert new_results(reply) == [news.removeprefix("Update: ")]
    assert (reply.tool_choice == "none") == (urgent == "update")


async def test_a_now_update_waits_until_the_user_stops_speaking() -> None:
    """A `now` update never cuts off the user: while they speak nothing is asked; once
    they stop it is spoken at once, without the grace an idle update waits for."""
    gates = Gates()
    loop = asyncio.get_running_loop()
    asked_at: list[float] = []
    respond = respond_to({"watch": call("watch_gate", "w1", flight="LH123")})

    def timed(req: LLMRequest) -> Reply | None:
        if req.mentions(RESULTS_MARKER):
            asked_at.append(loop.time())
        return respond(req)

    model = ScriptedLLM(responder=timed)
    toolset = gate_watcher(gates, urgent_result=False)
    async with voice_session(TravelAgent(tools=[toolset]), llm=model) as v:
        await v.user.say("watch", duration=0.1)
        await v.log.wait_for(lambda log: "ack w1" in log.heard)
        await v.user.start_speaking()
        gates.open("changed")
        await eventually(lambda: "w1_update_1" in history_output_ids(v.session))
        await asyncio.sleep(0.3)
        asked_while_speaking = len(asked_at)
        await v.user.stop_speaking()
        stopped_at = loop.time()
        await v.log.wait_for(lambda log: "Update: w1_update_1" in log.heard)

    assert asked_while_speaking == 0
    assert len(asked_at) == 1 and asked_at[0] - stopped_at < USER_TURN_GRACE / 2
    assert v.log.heard == ["ack w1", "Update: w1_update_1"]


# bad delivery values


async def test_a_bad_delivery_raises_at_the_call_site_and_the_call_goes_on() -> None:
    """`delivery="loud"` and `silent=True, delivery="now"` raise ValueError inside the
    tool; nothing is recorded for them, and the call's later update and result arrive."""
    gates = Gates()
    errors: list[str] = []

    @function_tool
    async def track_parcel(ctx: AsyncRunContext, parcel: str) -> str:
        """Track a parcel until it is delivered."""
        await ctx.update(f"Tracking {parcel}")
        await gates.wait("moved")
        for kwargs in ({"delivery": "loud"}, {"silent": True, "delivery": "now"}):
            try:
                await ctx.update("ignored", **kwargs)
            except ValueError as e:
                errors.append(str(e))
        await ctx.update("The parcel left the depot")
        await gates.wait("delivered")
        return "Delivered to the door"

    model = ScriptedLLM(responder=respond_to({"track": call("track_parcel", "t1", parcel="P-7")}))
    agent = TravelAgent(tools=[AsyncToolset(id="parcels", tools=[track_parcel])])
    async with text_session(agent, llm=model) as (session, log):
        await session.run(user_input="track")
        gates.open("moved")
        await log.wait_for(lambda _: "Update: t1_update_1" in log.heard)
        gates.open("delivered")
        await log.wait_for(lambda _: "Update: t1_finished" in log.heard)

    assert len(errors) == 2
    assert "'loud'" in errors[0] and "delivery must be one of" in errors[0]
    assert "silent=True contradicts" in errors[1]
    update_reply, result_reply = results_requests(model.requests)
    assert "The parcel left the depot" in output_of(update_reply, "t1_update_1")
    assert result_reply.output_ids() == ["t1", "t1_update_1", "t1_finished"]
    assert "ignored" not in " ".join(o.output for o in result_reply.outputs())
    assert log.heard == ["ack t1", "Update: t1_update_1", "Update: t1_finished"]


def test_a_background_result_with_a_bad_delivery_is_refused() -> None:
    """`BackgroundResult(..., delivery=...)` accepts only the three modes."""
    with pytest.raises(ValueError, match="delivery must be one of"):
        BackgroundResult("x", delivery="bad")  # type: ignore[arg-type]
    assert BackgroundResult("x", delivery="now").delivery == "now"


# receipts


async def test_an_interrupted_reply_is_given_again_with_what_the_user_heard() -> None:
    """The user cuts off the reply that speaks an update by asking for the status: the
    update's receipt says `interrupted` and `get_running_tasks` says its last update was
    not heard; the reply given again tells the model what the user did hear; once it
    played, the receipt says `heard` and so does `get_running_tasks`."""
    gates = Gates()
    replies = iter([Reply(text=LONG_UPDATE), Reply(text="Update again: c1_update_1")])

    def respond(req: LLMRequest) -> Reply | None:
        if req.last_item.type == "message" and req.mentions(RESULTS_MARKER):
            return next(replies)
        return respond_to(
            {
                "book": call("book_flight", "c1", destination="Tokyo"),
                "status": call("get_running_tasks", "l1"),
                "status again": call("get_running_tasks", "l2"),
            }
        )(req)

    model = ScriptedLLM(responder=respond)
    async with voice_session(TravelAgent(tools=[Flights(gates)]), llm=model) as v:
        receipts_when_interrupted: list[str | None] = []
        task_events(v.session).on(
            "reply_interrupted",
            lambda ev: receipts_when_interrupted.append(receipt_of(v.session, "c1_update_1")),
        )
        await v.user.say("book", duration=0.1)
        await v.log.wait_for(lambda log: "ack c1" in log.heard)
        gates.open("found")
        await eventually(lambda: LONG_UPDATE in v.tts.texts)
        await eventually(lambda: v.session.agent_state == "speaking")
        await asyncio.sleep(0.1)
        await v.user.say("status", duration=0.15)
        await v.log.wait_for(lambda log: "Update again: c1_update_1" in log.heard)
        await v.user.say("status again", duration=0.1)
        await v.log.wait_for(lambda log: "ack l2" in log.heard)
        final_receipt = receipt_of(v.session, "c1_update_1")

    first, again = results_requests(model.requests)
    (cut_off,) = [line for line in v.log.lines if line.interrupted]
    assert LONG_UPDATE.startswith(cut_off.text)
    (cut_at,) = [position for position, cut in v.speaker.played if cut]
    assert cut_at < len(LONG_UPDATE) * v.tts.seconds_per_char / 2  # the user cut it off
    assert "was interrupted" not in instructions_of(first)
    note = REPLY_INTERRUPTED_NOTE.format(call_ids=["c1_update_1"], heard=cut_off.text)
    assert note in instructions_of(again)
    assert new_results(again) == ["c1_update_1"]
    assert receipts_when_interrupted == ["interrupted"]
    assert final_receipt == "heard"
    listing_while_interrupted = output_of(model.requests[-1], "l1")
    listing_once_heard = output_of(model.requests[-1], "l2")
    assert "'last_update_heard': False" in listing_while_interrupted
    assert "'last_update_heard': True" in listing_once_heard
    assert v.log.heard[-3:] == ["ack l1", "Update again: c1_update_1", "ack l2"]


async def test_a_result_not_given_before_the_session_ends_is_recorded_as_not_heard() -> None:
    """The session closes while an update waits for the user to finish speaking: the
    history records that the user never heard it, naming its call id, and
    `reply_not_given` fires."""
    gates = Gates()
    not_given: list[ReplyEvent] = []
    model = ScriptedLLM(
        responder=respond_to({"book": call("book_flight", "c1", destination="Oslo")})
    )
    async with voice_session(TravelAgent(tools=[Flights(gates)]), llm=model) as v:
        task_events(v.session).on("reply_not_given", not_given.append)
        await v.user.say("book", duration=0.1)
        await v.log.wait_for(lambda log: "ack c1" in log.heard)
        await v.user.start_speaking()
        gates.open("found")
        await eventually(lambda: "c1_update_1" in history_output_ids(v.session))
        # the session ends while the user is still speaking

    assert results_requests(model.requests) == []
    (event,) = not_given
    assert "c1_update_1" in event.update_ids
    record = NOT_HEARD_RECORD.format(call_ids=event.update_ids, heard="")
    system_texts = [
        i.text_content
        for i in v.session.history.items
        if i.type == "message" and i.role == "system"
    ]
    assert record in system_texts
    assert receipt_of(v.session, "c1_update_1") == "not_given"
    assert v.log.heard == ["ack c1"]
