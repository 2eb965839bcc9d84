"""The contract with any realtime provider plugin: background outputs reach the model's
conversation and nothing the model holds is ever deleted, whether the plugin copies the
context it is given first (openai, azure, aws) or diffs its items as given (ultravox);
a provider that refuses outputs under call ids it never issued gets them as messages."""

from __future__ import annotations

import logging
import re

import pytest

from livekit.plugins.asynctools.testing import (
    LLMRequest,
    Reply,
    ScriptedRealtimeModel,
    text_session,
)

from .travel import RESULTS_MARKER, Flights, Gates, TravelAgent, call, new_results, respond_to


def responder(gates: Gates) -> object:
    """Books on "book"; the first progress reply is slow and the result lands while it
    is generated, so an update meets a provider conversation the agent has not seen."""

    def respond(req: LLMRequest) -> Reply | None:
        if req.last_item.type == "message" and req.mentions(RESULTS_MARKER):
            ids = asked_about(req)
            if ids == ["c1_update_1"]:
                gates.open("booked")
                return Reply(text="Update: c1_update_1", delay=0.1)
            return Reply(text="Update: " + ", ".join(ids))
        return respond_to(
            {
                "book": call("book_flight", "c1", destination="Tokyo"),
                "thanks": Reply(text="You're welcome."),
            }
        )(req)

    return respond


def asked_about(req: LLMRequest) -> list[str]:
    """The call ids a results request names (outputs or, for a provider that took them
    as messages, the notes that carry them)."""
    instructions = next(t for t in reversed(req.texts("system")) if RESULTS_MARKER in t)
    return re.findall(r"'([^']+)'", instructions.split("call_ids:", 1)[1].split(")", 1)[0])


@pytest.mark.parametrize("style", ["copy_first", "as_given"])
async def test_every_output_reaches_the_model_and_nothing_is_deleted(style: str) -> None:
    """With either provider style, the first update, the progress and the result are in
    the model's conversation in order, its answers stay, nothing was ever deleted, and the
    user's later turn is answered from the same conversation."""
    gates = Gates()
    model = ScriptedRealtimeModel(responder=responder(gates), update_style=style)  # type: ignore[arg-type]
    async with text_session(TravelAgent(tools=[Flights(gates)]), llm=model) as (session, log):
        await session.run(user_input="book")
        gates.open("found")
        await log.wait_for(lambda _: "Update: c1_finished" in log.heard)
        await session.run(user_input="thanks")

    (provider,) = model.sessions
    assert provider.deleted_ids == []
    remote = provider.chat_ctx.items
    outputs = [i.call_id for i in remote if i.type == "function_call_output"]
    assert outputs == ["c1", "c1_update_1", "c1_finished"]
    answers = [i.text_content for i in remote if i.type == "message" and i.role == "assistant"]
    assert answers == ["ack c1", "Update: c1_update_1", "Update: c1_finished", "You're welcome."]
    # the results replies were asked about outputs the model had
    for req in provider.reply_requests:
        if req.instructions and RESULTS_MARKER in req.instructions:
            assert set(new_results(req.request)) <= set(req.request.output_ids())
    assert log.heard == list(answers)


async def test_a_provider_that_refuses_derived_call_ids_gets_messages_and_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A provider that refuses outputs for call ids it never issued: the progress and the
    result reach it as messages naming the call, the user hears both, one warning is
    logged for the session, no error, and later turns (whose updates carry the whole
    local chat) are not refused again."""
    gates = Gates()
    model = ScriptedRealtimeModel(
        responder=responder(gates), update_style="as_given", refuses_unknown_call_ids=True
    )
    with caplog.at_level(logging.WARNING, logger="livekit.plugins.asynctools"):
        async with text_session(TravelAgent(tools=[Flights(gates)]), llm=model) as (
            session,
            log,
        ):
            await session.run(user_input="book")
            gates.open("found")
            await log.wait_for(lambda _: "Update: c1_finished" in log.heard)
            refused = model.sessions[0].refused_updates
            await session.run(user_input="thanks")

    (provider,) = model.sessions
    assert refused == 1  # the first derived output only: later ones went as messages
    assert provider.refused_updates == 1  # core's own update of the next turn was taken
    remote = provider.chat_ctx.items
    assert [i.call_id for i in remote if i.type == "function_call_output"] == ["c1"]
    notes = [i.text_content or "" for i in remote if i.type == "message" and i.role == "user"]
    assert any("c1_update_1" in n and "Found 3 flights" in n for n in notes)
    assert any("c1_finished" in n and "FL-TOKYO" in n for n in notes)
    assert provider.deleted_ids == []
    assert log.heard == ["ack c1", "Update: c1_update_1", "Update: c1_finished", "You're welcome."]
    warnings = [r for r in caplog.records if r.name == "livekit.plugins.asynctools"]
    assert [r.levelname for r in warnings] == ["WARNING"]
    assert "added as messages" in warnings[0].getMessage()


async def test_a_provider_that_takes_no_injected_function_calls_gets_messages_from_the_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A provider whose capabilities say it takes no function calls it did not issue
    (Gemini Live, Nova Sonic, Ultravox): the first update stays the call's own output,
    and the progress and the result reach it as messages naming the call, from the
    start, with no refusal and no warning; the user hears both."""
    gates = Gates()
    model = ScriptedRealtimeModel(
        responder=responder(gates), refuses_unknown_call_ids=True, manual_function_calls=False
    )
    with caplog.at_level(logging.WARNING, logger="livekit.plugins.asynctools"):
        async with text_session(TravelAgent(tools=[Flights(gates)]), llm=model) as (
            session,
            log,
        ):
            await session.run(user_input="book")
            gates.open("found")
            await log.wait_for(lambda _: "Update: c1_finished" in log.heard)

    (provider,) = model.sessions
    assert provider.refused_updates == 0
    remote = provider.chat_ctx.items
    assert [i.call_id for i in remote if i.type == "function_call_output"] == ["c1"]
    notes = [i.text_content or "" for i in remote if i.type == "message" and i.role == "user"]
    assert [n.split(")", 1)[0] for n in notes if n.startswith("Background tool")] == [
        "Background tool `book_flight` (call_id c1_update_1",
        "Background tool `book_flight` (call_id c1_finished",
    ]
    assert log.heard == ["ack c1", "Update: c1_update_1", "Update: c1_finished"]
    assert not [r for r in caplog.records if r.name == "livekit.plugins.asynctools"]
    # the local chat holds the same messages, so core's own updates agree with the model
    local = [i.text_content for i in session.history.items if i.type == "message"]
    assert sum(1 for t in local if (t or "").startswith("Background tool")) == 2
