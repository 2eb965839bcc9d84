"""Background results on a realtime model: added to the provider's conversation, never
removing what the model already has (such as the answer it is generating)."""

from __future__ import annotations

from livekit.plugins.asynctools.testing import (
    LLMRequest,
    Reply,
    ScriptedRealtimeModel,
    text_session,
)

from .travel import RESULTS_MARKER, Flights, Gates, TravelAgent, call, new_results, respond_to


async def test_results_reach_a_realtime_model_without_deleting_its_answer() -> None:
    """A result lands while the model is still generating the previous deferred reply:
    the result is added to the provider's conversation and nothing is deleted there."""
    gates = Gates()

    def respond(req: LLMRequest) -> Reply | None:
        if req.last_item.type == "message" and req.mentions(RESULTS_MARKER):
            ids = new_results(req)
            if ids == ["c1_update_1"]:
                gates.open("booked")  # lands while this answer is generated
                return Reply(text="Update: c1_update_1", delay=0.1)
            return Reply(text="Update: " + ", ".join(ids))
        return respond_to({"book": call("book_flight", "c1", destination="Tokyo")})(req)

    model = ScriptedRealtimeModel(responder=respond)
    async with text_session(TravelAgent(tools=[Flights(gates)]), llm=model) as (session, log):
        await session.run(user_input="book")
        gates.open("found")
        await log.wait_for(lambda _: "Update: c1_finished" in log.heard)

    (provider,) = model.sessions
    assert provider.deleted_ids == []
    remote_calls = [i.call_id for i in provider.chat_ctx.items if i.type == "function_call_output"]
    assert remote_calls == ["c1", "c1_update_1", "c1_finished"]
    results = [
        r for r in provider.reply_requests if r.instructions and RESULTS_MARKER in r.instructions
    ]
    assert [r.tool_choice for r in results] == ["none", results[1].tool_choice]
    assert results[1].tool_choice != "none"
    assert log.heard[-2:] == ["Update: c1_update_1", "Update: c1_finished"]
