"""Bad input from the model and from developers: a clear error, nothing lost or leaked.

Each row is one kind of bad input. A model-facing error reaches the model as the tool's
output (and the session goes on); a developer-facing error is raised where the mistake
is made. Nothing runs that should not, nothing is recorded twice, and no exception text
reaches the model or a log message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from livekit.agents import function_tool, llm
from livekit.plugins.asynctools import (
    AsyncRunContext,
    AsyncToolset,
    TaskEnded,
    Templates,
    task_events,
)
from livekit.plugins.asynctools.testing import (
    LLMRequest,
    Reply,
    ScriptedLLM,
    ToolCall,
    eventually,
    text_session,
)

from .travel import (
    Flights,
    Gates,
    TravelAgent,
    call,
    output_of,
    respond_to,
    results_requests,
)

SECRET = "sk-live-0123456789abcdef"
MEGABYTE = "x" * 1_000_000


def output_item(req: LLMRequest, call_id: str) -> llm.FunctionCallOutput:
    return next(o for o in req.outputs() if o.call_id == call_id)


def history_output_ids(session: Any) -> list[str]:
    return [i.call_id for i in session.history.items if i.type == "function_call_output"]


# arguments the model got wrong


def _refused(*words: str) -> Callable[[llm.FunctionCallOutput, list[str]], None]:
    def check(out: llm.FunctionCallOutput, finished: list[str]) -> None:
        assert out.is_error, out.output
        assert all(w in out.output for w in words), out.output
        assert finished == []

    return check


def _refused_or_ran(destination: str) -> Callable[[llm.FunctionCallOutput, list[str]], None]:
    def check(out: llm.FunctionCallOutput, finished: list[str]) -> None:
        if out.is_error:  # refused (1.5.2 core says only that an error occurred)
            assert finished == []
        else:  # ran with the arguments it understood
            assert "Searching flights to" in out.output
            assert finished == [destination]

    return check


ARGUMENT_ROWS = [
    # 1.8 repairs JSON cut short (it logs a warning): then the call runs
    pytest.param('{"destination": "Tokyo"', _refused_or_ran("Tokyo"), id="truncated_json"),
    pytest.param("to Tokyo, please", _refused(), id="not_json"),
    pytest.param('["Tokyo"]', _refused(), id="json_but_not_an_object"),
    pytest.param({"destination": ["Tokyo"]}, _refused("destination"), id="wrong_type"),
    pytest.param({}, _refused("destination"), id="missing_field"),
    pytest.param({"destination": MEGABYTE}, _refused_or_ran(MEGABYTE), id="one_megabyte"),
    pytest.param(
        {"destination": "Tokyo", "seat": "14A"}, _refused_or_ran("Tokyo"), id="unknown_field"
    ),
]


@pytest.mark.expected_log_errors(
    "error parsing arguments",
    "Error parsing arguments",
    # 1.5.2 core logs the arguments it cannot bind itself
    "with invalid arguments",
    "exception occurred while executing tool",
)
@pytest.mark.parametrize(("arguments", "check"), ARGUMENT_ROWS)
async def test_bad_arguments_get_a_clear_answer_and_the_session_goes_on(
    arguments: dict[str, Any] | str,
    check: Callable[[llm.FunctionCallOutput, list[str]], None],
) -> None:
    """Arguments that are not JSON, of the wrong type, missing, huge or with unknown
    fields: the model gets an error for the call naming what is wrong (or the call runs
    on what it understood), in bounded time; nothing runs that was refused, and the
    session answers the next turn."""
    gates = Gates()
    flights = Flights(gates)
    model = ScriptedLLM(
        responder=respond_to({"book": Reply(tool_calls=[ToolCall("book_flight", arguments, "c1")])})
    )
    async with text_session(TravelAgent(tools=[flights]), llm=model) as (session, log):
        await asyncio.wait_for(session.run(user_input="book"), timeout=10)
        answered = model.requests[-1]
        gates.open("found", "booked")
        if not output_item(answered, "c1").is_error:
            await log.wait_for(lambda _: any("c1_finished" in h for h in log.heard), timeout=10)
        await session.run(user_input="hello?")

    check(output_item(answered, "c1"), flights.finished)
    assert log.heard[-1] == "Sure."


# cancel_task with a call id that is not a running call of this session


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("nope_42", id="unknown_id"),
        pytest.param("", id="empty_id"),
        pytest.param("o1", id="another_sessions_id"),
    ],
)
async def test_cancel_task_refuses_a_call_id_that_is_not_running_here(target: str) -> None:
    """`cancel_task` with an unknown call id, an empty one, or the id of a call running
    in another session: the model gets an error naming the id, and every running call
    (ours and the other session's) goes on to its result."""
    gates = Gates()
    ours, theirs = Flights(gates), Flights(gates)
    model = ScriptedLLM(
        responder=respond_to(
            {
                "book": call("book_flight", "c1", destination="Tokyo"),
                "cancel": call("cancel_task", "x1", call_id=target),
            }
        )
    )
    other_model = ScriptedLLM(
        responder=respond_to({"book": call("book_flight", "o1", destination="Oslo")})
    )
    async with text_session(TravelAgent(tools=[theirs]), llm=other_model) as (other, other_log):
        await other.run(user_input="book")
        async with text_session(TravelAgent(tools=[ours]), llm=model) as (session, log):
            await session.run(user_input="book")
            await session.run(user_input="cancel")
            refusal = output_item(model.requests[-1], "x1")
            gates.open("found", "booked")
            await log.wait_for(lambda _: any("c1_finished" in h for h in log.heard))
        await other_log.wait_for(lambda _: any("o1_finished" in h for h in other_log.heard))

    assert refusal.is_error
    assert f"No running task has call_id {target};" in refusal.output
    assert ours.finished == ["Tokyo"] and theirs.finished == ["Oslo"]
    assert "c1_cancelled" not in history_output_ids(session)
    assert "o1_cancelled" not in history_output_ids(other)


@pytest.mark.parametrize(
    ("finish", "steps_before_cancel"),
    [
        pytest.param("while_the_model_answers", 0, id="finish_first"),
        pytest.param("with_a_tool", 0, id="together"),
        pytest.param("with_a_tool", 1, id="together_1_step"),
        pytest.param("with_a_tool", 3, id="together_3_steps"),
    ],
)
async def test_cancel_racing_the_final_result_ends_the_call_exactly_once(
    finish: str, steps_before_cancel: int
) -> None:
    """The call's result lands as `cancel_task` cancels it (the tool finishes while the
    model asks for the cancel, or a tool of the same turn lets it finish, a few loop
    steps around the cancel): the call ends exactly once (one `task_ended`), as cancelled
    or as done, and the model's records agree: a `_cancelled` record and a successful
    cancel, or a `_finished` record and a refused cancel, never both."""
    gates = Gates()

    @function_tool
    async def release_booking() -> str:
        """Let the running booking finish."""
        gates.open("booked")
        for _ in range(steps_before_cancel):
            await asyncio.sleep(0)
        return "released"

    flights = Flights(gates)
    cancel = ToolCall("cancel_task", {"call_id": "c1"}, "x1")
    if finish == "with_a_tool":
        race = Reply(tool_calls=[ToolCall("release_booking", {}, "r1"), cancel])
    else:
        race = Reply(tool_calls=[cancel])
    respond = respond_to({"book": call("book_flight", "c1", destination="Tokyo"), "race": race})

    def responder(req: LLMRequest) -> Reply | None:
        if finish == "while_the_model_answers" and req.last_user_text() == "race":
            gates.open("booked")  # the result is on its way as the model asks to cancel
        return respond(req)

    model = ScriptedLLM(responder=responder)
    ended: list[TaskEnded] = []
    async with text_session(TravelAgent(tools=[flights, release_booking]), llm=model) as (
        session,
        log,
    ):
        task_events(session).on("task_ended", ended.append)
        await session.run(user_input="book")
        gates.open("found")
        await log.wait_for(lambda _: "Update: c1_update_1" in log.heard)
        await session.run(user_input="race")
        cancel_answer = output_item(model.requests[-1], "x1")
        await eventually(lambda: len(ended) >= 1)
        await eventually(lambda: not session_busy(session))
        await asyncio.sleep(0.1)  # a second end would be recorded by now

    (end,) = ended
    outputs = history_output_ids(session)
    if end.status == "cancelled":
        assert not cancel_answer.is_error and "c1_cancelled" in outputs
        assert "c1_finished" not in outputs
    else:
        assert end.status == "done"
        assert cancel_answer.is_error and "c1_finished" in outputs
        assert "c1_cancelled" not in outputs
        assert flights.finished == ["Tokyo"]


def session_busy(session: Any) -> bool:
    from livekit.plugins.asynctools.session_scope import existing_scope

    scope = existing_scope(session)
    return scope is not None and scope.delivery.busy


# a tool's exception text is never shown


class _AllRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def all_log_records() -> Iterator[list[logging.LogRecord]]:
    handler = _AllRecords()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler.records
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


_STANDARD_RECORD_KEYS = set(vars(logging.makeLogRecord({})))


def _is_pii_key(key: str) -> bool:
    return "pii" in key.split(".")


@pytest.mark.expected_log_errors("background tool raised an exception")
async def test_a_secret_in_a_tools_exception_reaches_only_pii_log_extras(
    all_log_records: list[logging.LogRecord],
) -> None:
    """A background tool raises an exception whose text holds a secret (after its first
    update): the model gets a generic error, no log message or non-pii field holds the
    secret, and the developer finds it under an `lk.pii.*` extra."""
    gates = Gates()

    @function_tool
    async def charge_card(ctx: AsyncRunContext, amount: float) -> str:
        """Charge the user's card."""
        await ctx.update("Charging the card")
        await gates.wait("go")
        raise RuntimeError(f"payment API rejected key {SECRET}")

    model = ScriptedLLM(responder=respond_to({"pay": call("charge_card", "p1", amount=192)}))
    agent = TravelAgent(tools=[AsyncToolset(id="payments", tools=[charge_card])])
    async with text_session(agent, llm=model) as (session, log):
        await session.run(user_input="pay")
        gates.open("go")
        await log.wait_for(lambda _: any("p1_finished" in h for h in log.heard))

    record = output_item(results_requests(model.requests)[-1], "p1_finished")
    assert record.is_error and SECRET not in record.output
    assert all(
        SECRET not in (item.text_content or "")
        for item in session.history.items
        if item.type == "message"
    )
    leaks = [
        (r.name, key)
        for r in all_log_records
        for key, value in [("message", r.getMessage()), *vars(r).items()]
        if key not in ("msg", "args") or key == "message"
        if not _is_pii_key(key) and SECRET in str(value)
    ]
    assert leaks == []
    assert any(
        SECRET in str(value)
        for r in all_log_records
        for key, value in vars(r).items()
        if key not in _STANDARD_RECORD_KEYS and _is_pii_key(key)
    )


# developer mistakes


@pytest.mark.parametrize(
    ("template", "named"),
    [
        pytest.param("{nope}", "{nope}", id="unknown_placeholder"),
        pytest.param("{message} {call_id.secret}", None, id="attribute_of_a_placeholder_ok"),
        pytest.param("{0}", "{0}", id="positional"),
        pytest.param("{}", "{}", id="empty"),
        pytest.param("{message", "not a valid format string", id="unclosed"),
        pytest.param("{message:{nope}}", "{nope}", id="unknown_nested_placeholder"),
        pytest.param("{message!z}", "!z", id="bad_conversion"),
    ],
)
def test_a_template_with_a_bad_placeholder_is_refused_when_built(
    template: str, named: str | None
) -> None:
    """`Templates(update=...)` with a placeholder the text does not have, a positional
    or malformed one, or a bad conversion raises ValueError naming it, when built, not
    when the text is used."""
    if named is None:
        Templates(update=template)
        return
    with pytest.raises(ValueError, match="'update'") as raised:
        Templates(update=template)
    assert named in str(raised.value)


async def test_an_update_after_the_call_ended_raises_and_delivers_nothing() -> None:
    """A tool keeps its context and calls `ctx.update()` after its result was recorded:
    RuntimeError naming the call, nothing is added to the chat, nothing is said."""
    kept: list[AsyncRunContext] = []

    @function_tool
    async def quick_quote(ctx: AsyncRunContext, route: str) -> str:
        """Quote a fare."""
        kept.append(ctx)
        await ctx.update(f"Quoting {route}")
        return "192 euros"

    model = ScriptedLLM(responder=respond_to({"quote": call("quick_quote", "q1", route="PAR")}))
    agent = TravelAgent(tools=[AsyncToolset(id="quotes", tools=[quick_quote])])
    async with text_session(agent, llm=model) as (session, log):
        await session.run(user_input="quote")
        await log.wait_for(lambda _: "Update: q1_finished" in log.heard)
        outputs_before = history_output_ids(session)
        with pytest.raises(RuntimeError, match="after the call q1 of `quick_quote` ended"):
            await kept[0].update("late news")
        await asyncio.sleep(0.1)  # a delivered update would be asked about by now
        outputs_after = history_output_ids(session)

    assert outputs_before == outputs_after == ["q1", "q1_finished"]
    assert len(results_requests(model.requests)) == 1
    assert log.heard == ["ack q1", "Update: q1_finished"]
    assert "late news" not in output_of(model.requests[-1], "q1_finished")
