"""Fillers while a call runs, a tool that talks with the user (foreground), and a result
that hands off to another agent after the call already answered.

Each test drives a real session with scripted fakes and checks what the model was asked
and what the user heard, in order.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

from livekit.agents import Agent, AgentSession, function_tool
from livekit.plugins.asynctools import (
    ASK_INSTRUCTIONS,
    CANCEL_REASON_CLOSED,
    CANCELLED_TEMPLATE,
    DEFAULT_FILLER,
    FILLER_INSTRUCTIONS,
    FILLER_LINE_INSTRUCTIONS,
    AsyncRunContext,
    AsyncToolset,
    Filler,
    tool_policy,
)
from livekit.plugins.asynctools.testing import (
    ConversationLog,
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
    Gates,
    Hotels,
    TravelAgent,
    call,
    new_results,
    output_of,
    respond_to,
    results_requests,
    weather_tool,
)

LINES = ("Still on it.", "Almost there.")
QUESTION = "Shall I pay 192 euros?"


def searcher(gates: Gates, filler: Filler | None) -> Any:
    """A background tool that answers at once, then stays silent until ``done``."""

    @tool_policy(filler=filler)
    @function_tool
    async def search_fares(ctx: AsyncRunContext, destination: str) -> str:
        """Search the fares to the destination."""
        await ctx.update(f"Searching fares to {destination}")
        await gates.wait("done")
        return f"Cheapest fare to {destination}: 192 euros"

    return search_fares


def heard_after(log: ConversationLog, text: str) -> list[str]:
    heard = log.heard
    return heard[heard.index(text) + 1 :]


# fillers


async def test_fixed_filler_lines_are_said_in_turn_up_to_max_count_then_the_result() -> None:
    """A call that stays silent gets its fixed filler lines, in order, at most `max_count`
    of them; then its result is spoken, and no filler follows the call's end."""
    gates = Gates()
    filler = Filler(after=0.2, lines=list(LINES), max_count=2)
    model = ScriptedLLM(
        responder=respond_to({"fares": call("search_fares", "s1", destination="Rome")})
    )
    toolset = AsyncToolset(id="fares", tools=[searcher(gates, filler)])
    async with text_session(TravelAgent(tools=[toolset]), llm=model) as (session, log):
        await session.run(user_input="fares")
        await log.wait_for(lambda _: "Almost there." in log.heard)
        await asyncio.sleep(0.5)  # more than `after` again: a third filler would be due
        heard_before_the_result = list(log.heard)
        gates.open("done")
        await log.wait_for(lambda _: "Update: s1_finished" in log.heard)
        await asyncio.sleep(0.4)

    assert heard_before_the_result == ["ack s1", "Still on it.", "Almost there."]
    assert log.heard == ["ack s1", "Still on it.", "Almost there.", "Update: s1_finished"]
    # fixed lines are said as they are: the model is never asked for them
    assert not any(r.mentions(line) for r in model.requests for line in LINES)


@pytest.mark.parametrize("spelling", ["filler", "core"])
async def test_with_filler_speaks_only_during_its_step(spelling: str) -> None:
    """``ctx.with_filler(...)`` (a ``Filler``, or core's ``(line, delay=...)``) gives a
    filler to one slow step: it is said during that step, and not during a later silent
    step of the same call, whose tool has no filler of its own."""
    gates = Gates()

    @tool_policy(filler=None)
    @function_tool
    async def book(ctx: AsyncRunContext, destination: str) -> str:
        """Book a trip."""
        await ctx.update(f"Booking a trip to {destination}")
        scoped = (
            ctx.with_filler(Filler(after=0.2, lines=["Still booking."], max_count=1))
            if spelling == "filler"
            else ctx.with_filler("Still booking.", delay=0.2)
        )
        async with scoped:
            await gates.wait("booked")
        await gates.wait("done")
        return f"Trip to {destination} booked"

    model = ScriptedLLM(responder=respond_to({"book": call("book", "b1", destination="Rome")}))
    toolset = AsyncToolset(id="trips", tools=[book])
    async with text_session(TravelAgent(tools=[toolset]), llm=model) as (session, log):
        await session.run(user_input="book")
        await log.wait_for(lambda _: "Still booking." in log.heard)
        gates.open("booked")
        await asyncio.sleep(0.5)  # silent again, past `after`: no filler outside the step
        heard_after_the_step = list(log.heard)
        gates.open("done")
        await log.wait_for(lambda _: "Update: b1_finished" in log.heard)

    assert heard_after_the_step == ["ack b1", "Still booking."]
    assert log.heard == ["ack b1", "Still booking.", "Update: b1_finished"]


def test_with_filler_refuses_what_it_cannot_say() -> None:
    """Core's per-step callback is not supported, and core's timing options do not go
    with a ``Filler``: both are refused with a clear error before anything runs."""
    from livekit.plugins.asynctools.context import _filler_of

    with pytest.raises(ValueError, match="Filler, None or a line of text"):
        _filler_of(lambda step: "x", delay=0, interval=None, max_steps=None)
    with pytest.raises(ValueError, match="go with a line of text"):
        _filler_of(Filler(), delay=1, interval=None, max_steps=None)
    with pytest.raises(ValueError, match="delay must be"):
        _filler_of("One moment.", delay=-1, interval=None, max_steps=None)
    assert _filler_of("One moment.", delay=2, interval=None, max_steps=None) == Filler(
        after=2, lines=["One moment."], max_count=1
    )


async def test_no_filler_is_said_once_the_call_has_ended() -> None:
    """A call that ends before its next filler is due gets no filler after its end: the
    user hears its result last."""
    gates = Gates()
    filler = Filler(after=0.2, lines=["Still on it."], max_count=5)
    model = ScriptedLLM(
        responder=respond_to({"fares": call("search_fares", "s1", destination="Rome")})
    )
    toolset = AsyncToolset(id="fares", tools=[searcher(gates, filler)])
    async with text_session(TravelAgent(tools=[toolset]), llm=model) as (session, log):
        await session.run(user_input="fares")
        await log.wait_for(lambda _: "Still on it." in log.heard)
        gates.open("done")
        await log.wait_for(lambda _: "Update: s1_finished" in log.heard)
        await asyncio.sleep(0.5)  # two more fillers would have been due by now

    assert log.heard == ["ack s1", "Still on it.", "Update: s1_finished"]


async def test_a_generated_filler_asks_the_model_with_the_filler_instructions() -> None:
    """With no fixed lines, the model is asked for one sentence with the filler
    instructions (naming the running tool), and the user hears what it wrote."""
    gates = Gates()
    marker = FILLER_INSTRUCTIONS.split("{function_name}")[0]

    def respond(req: LLMRequest) -> Reply | None:
        if req.mentions(marker):
            return Reply(text="I am still looking for fares.")
        return respond_to({"fares": call("search_fares", "s1", destination="Rome")})(req)

    model = ScriptedLLM(responder=respond)
    toolset = AsyncToolset(id="fares", tools=[searcher(gates, Filler(after=0.2, max_count=1))])
    async with text_session(TravelAgent(tools=[toolset]), llm=model) as (session, log):
        await session.run(user_input="fares")
        await log.wait_for(lambda _: "I am still looking for fares." in log.heard)
        await asyncio.sleep(0.4)  # max_count=1: no second filler
        gates.open("done")
        await log.wait_for(lambda _: "Update: s1_finished" in log.heard)

    (asked,) = [r for r in model.requests if r.mentions(marker)]
    instructions = next(t for t in asked.texts("system") + asked.texts("developer") if marker in t)
    assert "`search_fares`" in instructions
    assert asked.tool_choice == "none"
    assert log.heard == ["ack s1", "I am still looking for fares.", "Update: s1_finished"]


async def test_a_fixed_filler_on_a_realtime_model_without_tts_is_spoken_by_the_model() -> None:
    """A realtime model with no TTS has no voice for `say()`: the fixed filler line is
    given to the model to say, word for word, and the user hears it."""
    gates = Gates()
    filler = Filler(after=0.2, lines=["Still on it."], max_count=1)
    line_instructions = FILLER_LINE_INSTRUCTIONS.format(line="Still on it.")

    def respond(req: LLMRequest) -> Reply | None:
        if req.mentions(line_instructions):
            return Reply(text="Still on it.")
        return respond_to({"fares": call("search_fares", "s1", destination="Rome")})(req)

    model = ScriptedRealtimeModel(responder=respond)
    toolset = AsyncToolset(id="fares", tools=[searcher(gates, filler)])
    async with text_session(TravelAgent(tools=[toolset]), llm=model) as (session, log):
        await session.run(user_input="fares")
        await log.wait_for(lambda _: "Still on it." in log.heard)
        gates.open("done")
        await log.wait_for(lambda _: "Update: s1_finished" in log.heard)

    (provider,) = model.sessions
    fillers = [r for r in provider.reply_requests if r.instructions == line_instructions]
    assert len(fillers) == 1 and fillers[0].tool_choice == "none"
    assert log.heard == ["ack s1", "Still on it.", "Update: s1_finished"]


async def test_a_filler_never_talks_over_the_user_and_waits_for_their_answer() -> None:
    """The user speaks past the filler's due time: no filler is said while they speak;
    their turn is answered first, then the filler comes."""
    gates = Gates()
    filler = Filler(after=0.3, lines=["Still on it."], max_count=1)
    model = ScriptedLLM(
        responder=respond_to(
            {
                "fares": call("search_fares", "s1", destination="Rome"),
                "what time is it": Reply(text="It is noon."),
            }
        )
    )
    toolset = AsyncToolset(id="fares", tools=[searcher(gates, filler)])
    async with voice_session(TravelAgent(tools=[toolset]), llm=model) as v:
        await v.user.say("fares")
        await v.log.wait_for(lambda log: "ack s1" in log.heard)
        await v.user.start_speaking()
        await asyncio.sleep(0.6)  # the filler is due while the user speaks
        said_while_speaking = "Still on it." in v.tts.texts
        await v.user.stop_speaking()
        v.user.transcribe("what time is it")
        await v.log.wait_for(lambda log: "Still on it." in log.heard)
        gates.open("done")
        await v.log.wait_for(lambda log: "Update: s1_finished" in log.heard)

    assert not said_while_speaking
    assert v.log.heard == ["ack s1", "It is noon.", "Still on it.", "Update: s1_finished"]
    assert not any(line.interrupted for line in v.log.lines)


@pytest.mark.parametrize(
    ("toolset_filler", "tool_filler", "fillers_heard"),
    [
        (Filler(after=0.2, lines=["Still on it."], max_count=1), ..., ["Still on it."]),
        (None, ..., []),
        (Filler(after=0.2, lines=["Still on it."], max_count=1), None, []),
    ],
    ids=["toolset-filler", "toolset-none", "tool-none-overrides-toolset"],
)
async def test_a_toolset_or_tool_filler_of_none_turns_fillers_off(
    toolset_filler: Filler | None, tool_filler: Any, fillers_heard: list[str]
) -> None:
    """A toolset's filler applies to its tools; `filler=None` on the toolset, or on a
    tool, means the call runs without any filler."""
    gates = Gates()

    @function_tool
    async def search_fares(ctx: AsyncRunContext, destination: str) -> str:
        """Search the fares to the destination."""
        await ctx.update(f"Searching fares to {destination}")
        await gates.wait("done")
        return "192 euros"

    tool = search_fares if tool_filler is ... else tool_policy(filler=tool_filler)(search_fares)
    model = ScriptedLLM(
        responder=respond_to({"fares": call("search_fares", "s1", destination="Rome")})
    )
    toolset = AsyncToolset(id="fares", tools=[tool], filler=toolset_filler)
    async with text_session(TravelAgent(tools=[toolset]), llm=model) as (session, log):
        await session.run(user_input="fares")
        await asyncio.sleep(0.6)
        gates.open("done")
        await log.wait_for(lambda _: "Update: s1_finished" in log.heard)

    assert log.heard == ["ack s1", *fillers_heard, "Update: s1_finished"]


def test_the_toolset_default_filler_is_a_generated_line_after_20_seconds() -> None:
    """Without a `filler` argument a toolset says a model-written line after 20 s of
    silence about a call, at most 3 times."""
    default = inspect.signature(AsyncToolset.__init__).parameters["filler"].default
    assert default is DEFAULT_FILLER
    assert DEFAULT_FILLER == Filler(after=20.0, lines=None, max_count=3)


# foreground


class Payments(AsyncToolset):
    """A payment that must be confirmed by the user before it goes through."""

    def __init__(self, gates: Gates, *, ask_timeout: float = 30.0) -> None:
        super().__init__(id="payments", filler=None)
        self.gates = gates
        self.ask_timeout = ask_timeout
        self.answers: list[str] = []

    @function_tool
    async def pay(self, ctx: AsyncRunContext, amount: int) -> str:
        """Pay for the trip."""
        await ctx.update("Preparing the payment")
        await self.gates.wait("ready")
        try:
            async with ctx.foreground():
                answer = await ctx.ask(QUESTION, timeout=self.ask_timeout)
        except TimeoutError:
            self.answers.append("<no answer>")
            return "The user did not confirm the payment."
        self.answers.append(answer)
        return "paid" if answer == "yes" else "not paid"


def ask_responder(extra: dict[str, Reply]) -> Any:
    """Says the question when asked to; scripted answers otherwise."""
    ask = ASK_INSTRUCTIONS.format(question=QUESTION)

    def respond(req: LLMRequest) -> Reply | None:
        if req.mentions(ask):
            return Reply(text=QUESTION)
        return respond_to(
            {
                "pay and hotel": Reply(
                    tool_calls=[
                        *call("pay", "p1", amount=192).tool_calls,
                        *call("reserve_hotel", "h1", city="Rome").tool_calls,
                    ]
                ),
                **extra,
            }
        )(req)

    return respond


def payment_agent(payments: Payments, gates: Gates) -> TravelAgent:
    return TravelAgent(tools=[AsyncToolset(id="trip", tools=[payments, Hotels(gates)])])


async def test_a_held_floor_keeps_other_results_out_of_the_question_and_its_answer() -> None:
    """A tool asks the user inside `ctx.foreground()` while another call's result lands:
    that result is not spoken between the question and the answer; `ask` returns the
    user's words, and the held result is spoken once the block ends."""
    gates = Gates()
    payments = Payments(gates)
    model = ScriptedLLM(responder=ask_responder({"yes": Reply(text="Thank you.")}))
    async with text_session(payment_agent(payments, gates), llm=model) as (session, log):
        await session.run(user_input="pay and hotel")
        gates.open("ready")
        await log.wait_for(lambda _: QUESTION in log.heard)
        gates.open("hotel")  # lands while the question waits for its answer
        await asyncio.sleep(0.3)
        asked_while_held = len(results_requests(model.requests))
        await session.run(user_input="yes")
        await log.wait_for(lambda _: any("p1_finished" in h for h in log.heard))

    assert asked_while_held == 0
    assert payments.answers == ["yes"]
    after_question = heard_after(log, QUESTION)
    assert after_question[0] == "Thank you."
    assert "h1_finished" in after_question[1]
    assert "paid" in output_of(model.requests[-1], "p1_finished")


async def test_a_held_floor_waits_while_a_deferred_reply_runs_a_tool() -> None:
    """A deferred reply that calls a tool is not over while the tool runs (core counts the
    agent as idle then): a call that takes the floor meanwhile asks its question only
    after the tool's answer is spoken."""
    gates = Gates()
    payments = Payments(gates)
    check_weather, weather_running = weather_tool(gates)

    scripted = ask_responder({"yes": Reply(text="Thank you.")})

    def respond(req: LLMRequest) -> Reply | None:
        if req.last_item.type == "message" and req.mentions(RESULTS_MARKER):
            if "h1_finished" in new_results(req):
                return call("check_weather", "w1", city="Rome")
        return scripted(req)

    model = ScriptedLLM(responder=respond)
    trip = AsyncToolset(id="trip", tools=[payments, Hotels(gates)])
    agent = TravelAgent(tools=[trip, check_weather])
    async with text_session(agent, llm=model) as (session, log):
        await session.run(user_input="pay and hotel")
        gates.open("hotel")
        await weather_running.wait()
        gates.open("ready")  # the payment takes the floor while the weather tool runs
        await asyncio.sleep(0.3)
        heard_while_the_tool_ran = list(log.heard)
        gates.open("weather")
        await log.wait_for(lambda _: QUESTION in log.heard)
        await session.run(user_input="yes")
        await log.wait_for(lambda _: any("p1_finished" in h for h in log.heard))

    assert QUESTION not in heard_while_the_tool_ran
    assert log.heard.index("ack w1") < log.heard.index(QUESTION)
    assert payments.answers == ["yes"]


async def test_a_question_the_user_talked_over_before_hearing_it_is_asked_again() -> None:
    """The user starts speaking about something else before any of the question was
    heard: their words are answered as usual and not taken for the answer; the question
    is put again, and the answer to it is what `ask` returns."""
    gates = Gates()
    payments = Payments(gates)
    asks: list[LLMRequest] = []
    ask = ASK_INSTRUCTIONS.format(question=QUESTION)

    def respond(req: LLMRequest) -> Reply | None:
        if req.mentions(ask):
            asks.append(req)
            # the first time, the question takes a while to come: the user speaks first
            return Reply(text=QUESTION, delay=0.6 if len(asks) == 1 else 0)
        return ask_responder({"weather": Reply(text="It is sunny."), "yes": Reply(text="OK.")})(req)

    model = ScriptedLLM(responder=respond)
    async with voice_session(payment_agent(payments, gates), llm=model) as v:
        await v.user.say("pay and hotel", duration=0.1)
        await v.log.wait_for(lambda log: any(h.startswith("ack") for h in log.heard))
        gates.open("ready")
        await eventually(lambda: len(asks) == 1)
        await v.user.say("weather", duration=0.1)  # before the question is heard
        await v.log.wait_for(lambda log: QUESTION in log.heard, timeout=10)
        await v.user.say("yes", duration=0.1)
        await eventually(lambda: payments.answers != [], timeout=10)

    assert payments.answers == ["yes"]
    assert len(asks) == 2
    heard = v.log.heard
    assert heard.index("It is sunny.") < heard.index(QUESTION)


WATCH_AND_HOTEL = Reply(
    tool_calls=[
        *call("watch_prices", "w1").tool_calls,
        *call("reserve_hotel", "h1", city="Rome").tool_calls,
    ]
)


def price_watcher(gates: Gates) -> tuple[AsyncToolset, asyncio.Event]:
    """A toolset whose call holds the floor until ``leave`` (never, unless opened)."""
    holding = asyncio.Event()

    @function_tool
    async def watch_prices(ctx: AsyncRunContext) -> str:
        """Watch the prices with the user."""
        await ctx.update("Watching the prices")
        await gates.wait("ready")
        async with ctx.foreground():
            holding.set()
            await gates.wait("leave")
        return "done watching"

    return AsyncToolset(id="watcher", tools=[watch_prices], filler=None), holding


async def test_cancelling_a_call_that_holds_the_floor_lets_pending_results_speak() -> None:
    """The model cancels a call while it holds the floor: the floor is free again and the
    result that waited for it is spoken, with the cancellation."""
    gates = Gates()
    watcher, holding = price_watcher(gates)
    model = ScriptedLLM(
        responder=respond_to(
            {
                "watch and hotel": WATCH_AND_HOTEL,
                "stop watching": call("cancel_task", "x1", call_id="w1"),
            }
        )
    )
    agent = TravelAgent(tools=[AsyncToolset(id="trip", tools=[watcher, Hotels(gates)])])
    async with text_session(agent, llm=model) as (session, log):
        await session.run(user_input="watch and hotel")
        gates.open("ready")
        await asyncio.wait_for(holding.wait(), 2)
        gates.open("hotel")
        await asyncio.sleep(0.3)
        asked_while_held = len(results_requests(model.requests))
        await session.run(user_input="stop watching")  # the user may talk; replies may not
        await log.wait_for(lambda _: any("h1_finished" in h for h in log.heard))

    assert asked_while_held == 0
    assert output_of(model.requests[-1], "x1") == "Task w1 cancelled."
    (reply,) = [r for r in results_requests(model.requests) if "h1_finished" in r.output_ids()]
    assert "w1_cancelled" in reply.output_ids()
    assert log.heard[-1] == "Update: " + ", ".join(new_results(reply))


async def test_closing_the_toolset_of_a_call_that_holds_the_floor_releases_it() -> None:
    """The toolset of a call holding the floor is closed: the call is cancelled, the
    floor released, and the pending result is spoken with the cancellation."""
    gates = Gates()
    watcher, holding = price_watcher(gates)
    model = ScriptedLLM(responder=respond_to({"watch and hotel": WATCH_AND_HOTEL}))
    agent = TravelAgent(tools=[AsyncToolset(id="trip", tools=[watcher, Hotels(gates)])])
    async with text_session(agent, llm=model) as (session, log):
        await session.run(user_input="watch and hotel")
        gates.open("ready")
        await asyncio.wait_for(holding.wait(), 2)
        gates.open("hotel")
        await asyncio.sleep(0.3)
        asked_while_held = len(results_requests(model.requests))
        await watcher.aclose()
        await log.wait_for(lambda _: any("h1_finished" in h for h in log.heard))

    assert asked_while_held == 0
    (reply,) = [r for r in results_requests(model.requests) if "h1_finished" in r.output_ids()]
    assert "w1_cancelled" in reply.output_ids()


async def test_ask_times_out_when_the_user_says_nothing_and_the_floor_is_released() -> None:
    """`ask(timeout=...)` raises TimeoutError when the user does not answer; the block
    ends, and the result held back meanwhile is spoken."""
    gates = Gates()
    payments = Payments(gates, ask_timeout=0.4)
    model = ScriptedLLM(responder=ask_responder({}))
    async with text_session(payment_agent(payments, gates), llm=model) as (session, log):
        await session.run(user_input="pay and hotel")
        gates.open("ready", "hotel")
        await log.wait_for(lambda _: any("h1_finished" in h for h in log.heard))
        await log.wait_for(lambda _: any("p1_finished" in h for h in log.heard))

    assert payments.answers == ["<no answer>"]
    assert log.heard.index(QUESTION) < next(
        i for i, h in enumerate(log.heard) if "h1_finished" in h
    )
    record = next(
        output_of(r, "p1_finished") for r in model.requests if "p1_finished" in r.output_ids()
    )
    assert record == "The user did not confirm the payment."


async def test_the_floor_is_released_at_the_foreground_timeout_even_if_the_block_runs_on() -> None:
    """A tool that holds the floor longer than its `foreground(timeout=...)` loses it:
    pending results are spoken while its block still runs."""
    gates = Gates()
    still_inside: list[bool] = []

    @function_tool
    async def watch_prices(ctx: AsyncRunContext) -> str:
        """Watch the prices with the user."""
        await ctx.update("Watching the prices")
        await gates.wait("ready")
        async with ctx.foreground(timeout=0.3):
            await gates.wait("leave")
            still_inside.append(True)
        return "done watching"

    both = Reply(
        tool_calls=[
            *call("watch_prices", "w1").tool_calls,
            *call("reserve_hotel", "h1", city="Rome").tool_calls,
        ]
    )
    model = ScriptedLLM(responder=respond_to({"watch and hotel": both}))
    watcher = AsyncToolset(id="watcher", tools=[watch_prices], filler=None)
    agent = TravelAgent(tools=[AsyncToolset(id="trip", tools=[watcher, Hotels(gates)])])
    async with text_session(agent, llm=model) as (session, log):
        await session.run(user_input="watch and hotel")
        gates.open("ready", "hotel")
        await asyncio.sleep(0.15)
        asked_while_held = len(results_requests(model.requests))
        await log.wait_for(lambda _: any("h1_finished" in h for h in log.heard))
        spoken_inside = not still_inside
        gates.open("leave")
        await log.wait_for(lambda _: any("w1_finished" in h for h in log.heard))

    assert asked_while_held == 0
    assert spoken_inside


# handoff after an update


class Support(Agent):
    """The agent a booking hands off to; it greets the user when it takes over."""

    def __init__(self) -> None:
        super().__init__(instructions="You are the support agent.")
        self.entered = asyncio.Event()

    async def on_enter(self) -> None:
        self.entered.set()
        self.session.say("Support here, how can I help?")


@pytest.mark.parametrize("with_value", [True, False], ids=["agent-and-value", "bare-agent"])
async def test_a_result_that_returns_an_agent_after_an_update_hands_off(
    with_value: bool,
) -> None:
    """A background call answers with an update, then returns an agent (alone or with a
    value): at the next free moment the session hands off to it, and the result is
    recorded as `<id>_finished`."""
    gates = Gates()
    support = Support()

    @function_tool
    async def transfer(ctx: AsyncRunContext) -> Any:
        """Book, then transfer the user to support."""
        await ctx.update("Booking before the transfer")
        await gates.wait("booked")
        return (support, "booked") if with_value else support

    model = ScriptedLLM(responder=respond_to({"transfer": call("transfer", "t1")}))
    toolset = AsyncToolset(id="transfer", tools=[transfer], filler=None)
    async with text_session(TravelAgent(tools=[toolset]), llm=model) as (session, log):
        await session.run(user_input="transfer")
        assert session.current_agent is not support
        gates.open("booked")
        await asyncio.wait_for(support.entered.wait(), 3)
        await log.wait_for(lambda _: "Support here, how can I help?" in log.heard)
        current = session.current_agent

    assert current is support
    record = next(
        i
        for i in session.history.items
        if i.type == "function_call_output" and i.call_id == "t1_finished"
    )
    if with_value:
        assert record.output == "booked"
    assert log.heard == ["ack t1", "Support here, how can I help?"]


TRANSFER_AND_HOTEL = Reply(
    tool_calls=[
        *call("transfer", "t1").tool_calls,
        *call("reserve_hotel", "h1", city="Rome").tool_calls,
    ]
)


def transfer_and_hotel(gates: Gates, support: Agent) -> AsyncToolset:
    """`transfer` (books after ``booked``, then hands off to ``support``) and the hotel."""

    @function_tool
    async def transfer(ctx: AsyncRunContext) -> Any:
        """Book, then transfer the user to support."""
        await ctx.update("Booking before the transfer")
        await gates.wait("booked")
        return support, "booked"

    return AsyncToolset(id="trip", tools=[transfer, Hotels(gates)], filler=None)


async def test_handoff_after_an_update_cancels_the_old_agents_calls() -> None:
    """A handoff by a background result closes the old agent's toolsets: its other
    running call is cancelled and the new agent's chat holds the `_cancelled` record."""
    gates = Gates()
    support = Support()

    model = ScriptedLLM(responder=respond_to({"transfer": TRANSFER_AND_HOTEL}))
    toolset = transfer_and_hotel(gates, support)
    async with text_session(TravelAgent(tools=[toolset]), llm=model) as (session, log):
        await session.run(user_input="transfer")
        gates.open("booked")
        await asyncio.wait_for(support.entered.wait(), 3)
        await eventually(
            lambda: any(getattr(i, "call_id", "") == "h1_cancelled" for i in support.chat_ctx.items)
        )
        gates.open("hotel")
        await asyncio.sleep(0.1)
        current = session.current_agent

    assert current is support
    record = next(
        i
        for i in support.chat_ctx.items
        if i.type == "function_call_output" and i.call_id == "h1_cancelled"
    )
    assert record.output == CANCELLED_TEMPLATE.format(
        function_name="reserve_hotel", call_id="h1", reason=CANCEL_REASON_CLOSED
    )
    assert not any(getattr(i, "call_id", "") == "h1_finished" for i in session.history.items)


async def test_handoff_after_an_update_keeps_session_calls_running_for_the_new_agent() -> None:
    """A session-level call goes on across a handoff made by a background result, and
    its result reaches the new agent."""
    gates = Gates()
    support = Support()

    model = ScriptedLLM(responder=respond_to({"transfer": TRANSFER_AND_HOTEL}))
    toolset = transfer_and_hotel(gates, support)
    session: AgentSession = AgentSession(llm=model, tools=[toolset])
    log = ConversationLog(session)
    await session.start(TravelAgent(tools=[]))
    try:
        await session.run(user_input="transfer")
        gates.open("booked")
        await asyncio.wait_for(support.entered.wait(), 3)
        gates.open("hotel")
        await log.wait_for(lambda _: any("h1_finished" in h for h in log.heard))
        current = session.current_agent
    finally:
        await session.aclose()

    assert current is support
    result = next(
        i
        for i in support.chat_ctx.items
        if i.type == "function_call_output" and i.call_id == "h1_finished"
    )
    assert "HT-ROME" in result.output
    assert log.heard[-2:] == ["Support here, how can I help?", "Update: h1_finished"]


async def test_no_filler_is_said_while_another_call_holds_the_floor() -> None:
    """A filler falls due while another call talks with the user (holds the floor): it
    waits until the floor is released, then is said."""
    gates = Gates()
    watcher, holding = price_watcher(gates)
    fares = AsyncToolset(
        id="fares",
        tools=[searcher(gates, Filler(after=0.2, lines=["Still on it."], max_count=1))],
    )
    both = Reply(
        tool_calls=[
            *call("watch_prices", "w1").tool_calls,
            *call("search_fares", "s1", destination="Rome").tool_calls,
        ]
    )
    model = ScriptedLLM(responder=respond_to({"watch and fares": both}))
    agent = TravelAgent(tools=[AsyncToolset(id="trip", tools=[watcher, fares])])
    async with text_session(agent, llm=model) as (session, log):
        await session.run(user_input="watch and fares")
        gates.open("ready")
        await asyncio.wait_for(holding.wait(), 2)
        await asyncio.sleep(0.5)  # the filler is due while the floor is held
        heard_while_held = list(log.heard)
        gates.open("leave")
        await log.wait_for(lambda _: "Still on it." in log.heard)
        gates.open("done")
        await log.wait_for(lambda _: any("s1_finished" in h for h in log.heard))

    assert heard_while_held == ["ack s1"]
    assert log.heard == ["ack s1", "Update: w1_finished", "Still on it.", "Update: s1_finished"]
