"""Rewording the texts the model is sent, and per-tool policies (text-only session)."""

from __future__ import annotations

import inspect
import subprocess
import sys
from typing import Any

import pytest

from livekit.agents import Agent, function_tool, llm
from livekit.plugins.asynctools import (
    CANCEL_REFUSED,
    AsyncRunContext,
    AsyncToolset,
    Templates,
    set_templates,
    tool_policy,
)
from livekit.plugins.asynctools.default_texts import DEFAULTS, PLACEHOLDERS, UpdateArgs
from livekit.plugins.asynctools.testing import LLMRequest, Reply, ScriptedLLM, text_session

from .travel import Gates, TravelAgent, call, output_of, respond_to, results_requests

# what a deferred reply is asked to say, in every rewording these tests use
REPLY_MARK = "reply for"


def respond_with_marked_replies(user_turns: dict[str, Reply]) -> Any:
    """Like ``respond_to``, but recognises deferred replies by ``REPLY_MARK``, which every
    reworded ``reply`` text of these tests contains."""
    base = respond_to(user_turns)

    def respond(req: LLMRequest) -> Reply | None:
        last = req.last_item
        if last.type == "message" and last.role != "user" and req.mentions(REPLY_MARK):
            return Reply(text="Told the user.")
        return base(req)

    return respond


def reply_instructions(req: LLMRequest) -> str:
    """The deferred-reply instructions the model was given with ``req``."""
    texts = req.texts("system") + req.texts("developer")
    return next(t for t in reversed(texts) if REPLY_MARK in t)


def no_policy(tool: Any) -> Any:
    return tool


# ---- Templates validation ----------------------------------------------------------


def test_every_default_text_passes_the_check_a_template_in_its_place_gets() -> None:
    """The defaults (``default_texts``) and the validation (``templates``) agree: every
    text a ``Templates`` may set has a default, and each default, set as a template of
    its own, uses only the placeholders its text takes."""
    assert set(inspect.signature(Templates).parameters) == set(DEFAULTS) == set(PLACEHOLDERS)
    every_default = Templates(**DEFAULTS)
    assert all(every_default.get(name) == text for name, text in DEFAULTS.items())


# run in a fresh interpreter: whether set_templates() was ever called is process-wide
_TEXT_CHOICE_BEFORE_AND_AFTER_SET_TEMPLATES = """
from livekit.plugins.asynctools import Templates, set_templates
from livekit.plugins.asynctools.default_texts import DEFAULTS
from livekit.plugins.asynctools.templates import text_for

class Agent: pass
class Session:
    def __init__(self): self.current_agent = Agent()

def check(session, other):
    args = {"pending_call_ids": ["c1"]}
    toolset = Templates(reply="toolset {pending_call_ids}")
    tool = Templates(reply=lambda a: f"tool {a['pending_call_ids'][0]}")
    yield text_for("reply", args, session), other or DEFAULTS["reply"].format(**args)
    yield text_for("reply", args, session, toolset=toolset), "toolset ['c1']"
    yield text_for("reply", args, session, tool=tool, toolset=toolset), "tool c1"
    yield text_for("not_heard", {"call_ids": [], "heard": ""}, session, toolset=toolset), (
        DEFAULTS["not_heard"].format(call_ids=[], heard="")
    )

session, other_session = Session(), Session()
before = list(check(session, None))
set_templates(session, Templates(reply="session {pending_call_ids}"))
after = list(check(session, "session ['c1']"))
untouched = list(check(other_session, None))
set_templates(other_session.current_agent, Templates(reply=lambda a: "agent"))
by_agent = list(check(other_session, "agent"))
for got, expected in before + after + untouched + by_agent:
    assert got == expected, (got, expected)
print("ok", len(before + after + untouched + by_agent))
"""


def test_a_text_is_chosen_alike_before_and_after_templates_are_first_set() -> None:
    """Until ``set_templates()`` is first called in a process, a text skips the session,
    agent and call lookups (the default is formatted in place); before and after, the tool
    beats the toolset, which beats the agent and the session, and a callable template
    gets its arguments. Checked in a fresh interpreter, where nothing was set yet."""
    done = subprocess.run(
        [sys.executable, "-c", _TEXT_CHOICE_BEFORE_AND_AFTER_SET_TEMPLATES],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok", "16"]


def test_an_unknown_placeholder_is_refused_when_templates_are_built() -> None:
    """A placeholder the text does not have is a ValueError naming it, at construction."""
    with pytest.raises(ValueError, match=r"unknown placeholder \{destination\}"):
        Templates(update="{function_name} is going to {destination}")
    with pytest.raises(ValueError, match=r"'timed_out'.*\{elapsed\}"):
        Templates(timed_out="gave up after {elapsed}")


def test_a_positional_placeholder_is_refused() -> None:
    """`{}` and `{0}` cannot be filled by name: refused at construction."""
    with pytest.raises(ValueError, match="positional placeholder"):
        Templates(reply="Say what {} found")
    with pytest.raises(ValueError, match="positional placeholder"):
        Templates(cancelled="{0} was cancelled")


@pytest.mark.parametrize("bad", [42, None, b"bytes", ["{message}"]])
def test_a_template_that_is_neither_text_nor_callable_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="must be a str or a callable"):
        Templates(update=bad)


def test_tool_descriptions_must_be_plain_text() -> None:
    with pytest.raises(ValueError, match="get_running_tasks_description must be a str"):
        Templates(get_running_tasks_description=lambda _: "List tasks")  # type: ignore[arg-type]


async def test_a_callable_template_gets_the_documented_placeholders() -> None:
    """A callable `update` template receives a dict with exactly the UpdateArgs keys, and
    what it returns is what the model reads."""
    received: list[dict[str, Any]] = []

    def update_text(args: dict[str, Any]) -> str:
        received.append(dict(args))
        return f"[{args['function_name']}] {args['message']} ({args['progress']})"

    @function_tool
    async def lookup(ctx: AsyncRunContext) -> str:
        """Look it up."""
        await ctx.update("Working", progress=0.25, stage="fetch")
        return "found"

    toolset = AsyncToolset(id="t", tools=[lookup], templates=Templates(update=update_text))
    model = ScriptedLLM(responder=respond_to({"go": call("lookup", "l1")}))
    async with text_session(TravelAgent(tools=[toolset]), llm=model) as (session, log):
        await session.run(user_input="go")
        await log.wait_for(lambda _: "Update: l1_finished" in log.heard)

    assert output_of(model.requests[-1], "l1") == "[lookup] Working (25%)"
    (args,) = received
    assert set(args) == set(UpdateArgs.__annotations__)
    assert args == {
        "function_name": "lookup",
        "call_id": "l1",
        "message": "Working",
        "details": " (25% done, stage: fetch)",
        "progress": "25%",
        "stage": "fetch",
        "seconds_left": "",
    }


# ---- precedence ------------------------------------------------------------------------

LAYERS = ("session", "agent", "toolset", "tool", "call")


async def run_layered(
    layers: dict[str, Templates],
    *,
    update_template: Any = None,
    second_update: bool = False,
) -> tuple[ScriptedLLM, list[str]]:
    """Run one `lookup` call (first update, maybe a second, then its result) with
    ``layers`` set where their names say; return the model and what the user heard."""
    gates = Gates()

    @(tool_policy(templates=layers["tool"]) if "tool" in layers else no_policy)
    @function_tool
    async def lookup(ctx: AsyncRunContext) -> str:
        """Look it up."""
        if "call" in layers:
            set_templates(ctx, layers["call"])
        if update_template is not None:
            await ctx.update("Working", template=update_template)
        else:
            await ctx.update("Working")
        if second_update:
            await gates.wait("more")
            await ctx.update("Still at it")
        await gates.wait("done")
        return "found"

    toolset = AsyncToolset(id="t", tools=[lookup], templates=layers.get("toolset"))
    agent = TravelAgent(tools=[toolset])
    if "agent" in layers:
        set_templates(agent, layers["agent"])
    model = ScriptedLLM(responder=respond_with_marked_replies({"go": call("lookup", "l1")}))
    async with text_session(agent, llm=model) as (session, log):
        if "session" in layers:
            set_templates(session, layers["session"])
        await session.run(user_input="go")
        if second_update:
            gates.open("more")
            await log.wait_for(lambda _: len(log.heard) >= 2)
        gates.open("done")
        await log.wait_for(lambda _: len(log.heard) >= (3 if second_update else 2))
    return model, log.heard


@pytest.mark.parametrize("most_specific", [*LAYERS, "update"])
async def test_the_most_specific_update_text_wins(most_specific: str) -> None:
    """The `update` text set on the session, the agent, the toolset, the tool, the call
    (`set_templates(ctx)`) or the one update (`ctx.update(template=)`): each layer
    overrides every less specific one."""
    order = [*LAYERS, "update"]
    given = order[: order.index(most_specific) + 1]
    layers = {
        layer: Templates(update=f"{layer} says: {{message}}") for layer in given if layer in LAYERS
    }
    template = "update says: {message}" if most_specific == "update" else None
    model, heard = await run_layered(layers, update_template=template)

    first_answer = next(r for r in model.requests if "l1" in r.output_ids())
    assert output_of(first_answer, "l1") == f"{most_specific} says: Working"
    assert heard == ["ack l1", "Update: l1_finished"]


@pytest.mark.parametrize("most_specific", LAYERS)
async def test_the_most_specific_reply_instructions_win(most_specific: str) -> None:
    """The deferred reply's instructions come from the most specific layer that sets
    `reply`, for the call the reply is about."""
    given = LAYERS[: LAYERS.index(most_specific) + 1]
    layers = {
        layer: Templates(reply=f"{layer} {REPLY_MARK} {{pending_call_ids}}") for layer in given
    }
    model, heard = await run_layered(layers)

    (reply,) = [r for r in model.requests if r.mentions(REPLY_MARK)]
    assert reply_instructions(reply) == f"{most_specific} {REPLY_MARK} ['l1_finished']"
    assert heard == ["ack l1", "Told the user."]


async def test_each_text_falls_through_to_the_next_layer_that_sets_it() -> None:
    """The session sets `update` and `reply`, the toolset only `update`: updates use the
    toolset's text, the reply the session's. `ctx.update(template=)` rewords only that
    one update; the next one is back to the toolset's."""
    layers = {
        "session": Templates(
            update="session says: {message}", reply=f"session {REPLY_MARK} {{pending_call_ids}}"
        ),
        "toolset": Templates(update="toolset says: {message}"),
    }
    model, heard = await run_layered(
        layers, update_template="just once: {message}", second_update=True
    )

    last = model.requests[-1]
    assert output_of(last, "l1") == "just once: Working"
    assert output_of(last, "l1_update_1") == "toolset says: Still at it"
    replies = [r for r in model.requests if r.mentions(REPLY_MARK)]
    assert [reply_instructions(r) for r in replies] == [
        f"session {REPLY_MARK} ['l1_update_1']",
        f"session {REPLY_MARK} ['l1_finished']",
    ]
    assert heard == ["ack l1", "Told the user.", "Told the user."]


# ---- other reworded texts ------------------------------------------------------------


async def test_the_cancelled_text_can_be_reworded() -> None:
    """The record of a call cancelled by `cancel_task` uses the `cancelled` template."""
    gates = Gates()

    @function_tool
    async def lookup(ctx: AsyncRunContext) -> str:
        """Look it up."""
        await ctx.update("Working")
        await gates.wait("never")
        return "found"

    templates = Templates(cancelled="{function_name} ({call_id}) stopped {reason}.")
    toolset = AsyncToolset(id="t", tools=[lookup], templates=templates)
    model = ScriptedLLM(
        responder=respond_to(
            {"go": call("lookup", "l1"), "stop": call("cancel_task", "x1", call_id="l1")}
        )
    )
    async with text_session(TravelAgent(tools=[toolset]), llm=model) as (session, log):
        await session.run(user_input="go")
        await session.run(user_input="stop")
        await log.wait_for(lambda _: "Update: l1_cancelled" in log.heard)

    record = output_of(results_requests(model.requests)[-1], "l1_cancelled")
    assert record == "lookup (l1) stopped on request."


async def test_the_finished_without_result_text_can_be_reworded() -> None:
    """A call that returns None after its first update is recorded with the
    `finished_without_result` text set on the session."""
    gates = Gates()

    @function_tool
    async def notify(ctx: AsyncRunContext) -> None:
        """Notify the team."""
        await ctx.update("Notifying")
        await gates.wait("done")

    model = ScriptedLLM(responder=respond_to({"go": call("notify", "n1")}))
    toolset = AsyncToolset(id="t", tools=[notify])
    async with text_session(TravelAgent(tools=[toolset]), llm=model) as (session, log):
        set_templates(session, Templates(finished_without_result="{function_name} is done."))
        await session.run(user_input="go")
        gates.open("done")
        await log.wait_for(lambda _: "Update: n1_finished" in log.heard)

    assert output_of(results_requests(model.requests)[-1], "n1_finished") == "notify is done."


async def test_the_duplicate_reject_text_can_be_reworded() -> None:
    """The `reject` policy answers a second call with the `duplicate_reject` text."""
    gates = Gates()

    @function_tool
    async def lookup(ctx: AsyncRunContext) -> str:
        """Look it up."""
        await ctx.update("Working")
        await gates.wait("done")
        return "found"

    templates = Templates(duplicate_reject="No: {function_name} runs already.")
    toolset = AsyncToolset(id="t", tools=[lookup], on_duplicate_call="reject", templates=templates)
    model = ScriptedLLM(
        responder=respond_to({"go": call("lookup", "l1"), "again": call("lookup", "l2")})
    )
    async with text_session(TravelAgent(tools=[toolset]), llm=model) as (session, log):
        await session.run(user_input="go")
        await session.run(user_input="again")
        refusal = output_of(model.requests[-1], "l2")
        gates.open("done")
        await log.wait_for(lambda _: "Update: l1_finished" in log.heard)

    assert refusal == "No: lookup runs already."
    assert log.heard == ["ack l1", "ack l2", "Update: l1_finished"]


class DescribedToolsLLM(ScriptedLLM):
    """A scripted model that also records the description of every tool it was offered."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.descriptions: list[dict[str, str | None]] = []

    def chat(self, *, chat_ctx: llm.ChatContext, tools: list[Any] | None = None, **kw: Any) -> Any:
        self.descriptions.append(
            {t.info.name: getattr(t.info, "description", None) for t in tools or []}
        )
        return super().chat(chat_ctx=chat_ctx, tools=tools, **kw)


async def test_the_task_tools_descriptions_can_be_reworded_per_toolset() -> None:
    """`AsyncToolset(templates=Templates(get_running_tasks_description=...,
    cancel_task_description=...))`: the model is offered the task tools with those
    descriptions."""
    templates = Templates(
        get_running_tasks_description="What is still running.",
        cancel_task_description="Stop one of them.",
    )
    model = DescribedToolsLLM(responder=respond_to({}))
    agent = TravelAgent(tools=[AsyncToolset(id="t", templates=templates)])
    async with text_session(agent, llm=model) as (session, _):
        await session.run(user_input="hello")

    offered = model.descriptions[-1]
    assert offered["get_running_tasks"] == "What is still running."
    assert offered["cancel_task"] == "Stop one of them."
    assert model.requests[-1].tool_names.count("get_running_tasks") == 1


# ---- per-tool policies -----------------------------------------------------------------


@pytest.mark.parametrize("declared_on", ["tool", "toolset"])
async def test_name_and_args_scope_rejects_only_the_same_arguments(declared_on: str) -> None:
    """With `duplicate_scope="name_and_args"`, the same tool with other arguments runs,
    while the same arguments again are rejected with the running call."""
    gates = Gates()
    policy = (
        tool_policy(on_duplicate="reject", duplicate_scope="name_and_args")
        if declared_on == "tool"
        else no_policy
    )

    @policy
    @function_tool
    async def search(ctx: AsyncRunContext, city: str) -> str:
        """Search a city."""
        await ctx.update(f"Searching {city}")
        await gates.wait("done")
        return f"results for {city}"

    options: dict[str, Any] = (
        {"on_duplicate_call": "reject", "duplicate_scope": "name_and_args"}
        if declared_on == "toolset"
        else {}
    )
    toolset = AsyncToolset(id="t", tools=[search], **options)
    model = ScriptedLLM(
        responder=respond_to(
            {
                "tokyo": call("search", "s1", city="Tokyo"),
                "paris": call("search", "s2", city="Paris"),
                "tokyo again": call("search", "s3", city="Tokyo"),
            }
        )
    )
    async with text_session(TravelAgent(tools=[toolset]), llm=model) as (session, log):
        await session.run(user_input="tokyo")
        await session.run(user_input="paris")
        paris = output_of(model.requests[-1], "s2")
        await session.run(user_input="tokyo again")
        refusal = output_of(model.requests[-1], "s3")
        gates.open("done")
        await log.wait_for(
            lambda _: (
                any("s1_finished" in h for h in log.heard)
                and any("s2_finished" in h for h in log.heard)
            )
        )

    assert "Searching Paris" in paris
    assert "already running" in refusal and '"call_id": "s1"' in refusal
    assert '"call_id": "s2"' not in refusal
    assert "s3_finished" not in model.requests[-1].output_ids()


async def test_a_tools_duplicate_policy_overrides_its_toolsets() -> None:
    """The toolset rejects duplicates; a tool declaring `on_duplicate="allow"` runs twice,
    while its neighbour without a policy is still rejected."""
    gates = Gates()

    @tool_policy(on_duplicate="allow")
    @function_tool
    async def poll(ctx: AsyncRunContext) -> str:
        """Poll the provider."""
        await ctx.update("Polling")
        await gates.wait("done")
        return "polled"

    @function_tool
    async def sync(ctx: AsyncRunContext) -> str:
        """Sync the data."""
        await ctx.update("Syncing")
        await gates.wait("done")
        return "synced"

    toolset = AsyncToolset(id="t", tools=[poll, sync], on_duplicate_call="reject")
    model = ScriptedLLM(
        responder=respond_to(
            {
                "poll": call("poll", "p1"),
                "poll again": call("poll", "p2"),
                "sync": call("sync", "y1"),
                "sync again": call("sync", "y2"),
            }
        )
    )
    async with text_session(TravelAgent(tools=[toolset]), llm=model) as (session, log):
        for turn in ("poll", "poll again", "sync", "sync again"):
            await session.run(user_input=turn)
        answers = {i: output_of(model.requests[-1], i) for i in ("p2", "y2")}
        gates.open("done")
        await log.wait_for(lambda _: any("y1_finished" in h for h in log.heard))
        await log.wait_for(lambda _: any("p2_finished" in h for h in log.heard))

    assert "Polling" in answers["p2"]
    assert "already running" in answers["y2"] and '"call_id": "y1"' in answers["y2"]


async def test_a_call_that_may_not_be_cancelled_is_refused_and_keeps_running() -> None:
    """`cancellable=False`: `cancel_task` answers an error with the cancel_refused text,
    the listing says so, and the call goes on to deliver its result."""
    gates = Gates()

    @tool_policy(cancellable=False)
    @function_tool
    async def pay(ctx: AsyncRunContext, amount: int) -> str:
        """Charge the card."""
        await ctx.update("Charging the card")
        await gates.wait("paid")
        return "paid"

    model = ScriptedLLM(
        responder=respond_to(
            {
                "pay": call("pay", "p1", amount=5),
                "list": call("get_running_tasks", "l1"),
                "cancel": call("cancel_task", "x1", call_id="p1"),
            }
        )
    )
    agent = TravelAgent(tools=[AsyncToolset(id="pay", tools=[pay])])
    async with text_session(agent, llm=model) as (session, log):
        await session.run(user_input="pay")
        await session.run(user_input="list")
        listing = output_of(model.requests[-1], "l1")
        await session.run(user_input="cancel")
        refusal = next(o for o in model.requests[-1].outputs() if o.call_id == "x1")
        gates.open("paid")
        await log.wait_for(lambda _: "Update: p1_finished" in log.heard)

    assert refusal.is_error
    assert refusal.output == CANCEL_REFUSED.format(
        call_id="p1", reason="the tool `pay` may not be cancelled"
    )
    assert "'cancellable': False" in listing
    assert output_of(model.requests[-1], "p1_finished") == "paid"
    assert "p1_cancelled" not in model.requests[-1].output_ids()
    assert log.heard == ["ack p1", "ack l1", "ack x1", "Update: p1_finished"]


async def test_the_cancel_refused_text_can_be_reworded() -> None:
    """The refusal of `cancel_task` uses the `cancel_refused` template of the agent."""
    gates = Gates()

    @tool_policy(cancellable=False)
    @function_tool
    async def pay(ctx: AsyncRunContext) -> str:
        """Charge the card."""
        await ctx.update("Charging the card")
        await gates.wait("paid")
        return "paid"

    model = ScriptedLLM(
        responder=respond_to(
            {"pay": call("pay", "p1"), "cancel": call("cancel_task", "x1", call_id="p1")}
        )
    )
    agent = TravelAgent(tools=[AsyncToolset(id="pay", tools=[pay])])
    set_templates(agent, Templates(cancel_refused="Too late to stop {call_id}."))
    async with text_session(agent, llm=model) as (session, log):
        await session.run(user_input="pay")
        await session.run(user_input="cancel")
        refusal = next(o for o in model.requests[-1].outputs() if o.call_id == "x1")
        gates.open("paid")
        await log.wait_for(lambda _: "Update: p1_finished" in log.heard)

    assert refusal.is_error and refusal.output == "Too late to stop p1."


def slow_tool(placement: str, gates: Gates) -> tuple[Agent, str]:
    """An agent whose only background tool, `slow`, declares `timeout=0.1` by
    ``placement``; returns it with the toolset's id."""
    limit = tool_policy(timeout=0.1)

    async def body(ctx: AsyncRunContext) -> str:
        await ctx.update("Working")
        await gates.wait("never")
        return "done"

    if placement == "above":

        @limit
        @function_tool
        async def slow(ctx: AsyncRunContext) -> str:
            """Do the slow thing."""
            return await body(ctx)

        toolset = AsyncToolset(id="free", tools=[slow])
    elif placement == "below":

        @function_tool
        @limit
        async def slow(ctx: AsyncRunContext) -> str:
            """Do the slow thing."""
            return await body(ctx)

        toolset = AsyncToolset(id="free", tools=[slow])
    elif placement == "method_above":

        class Above(AsyncToolset):
            @limit
            @function_tool
            async def slow(self, ctx: AsyncRunContext) -> str:
                """Do the slow thing."""
                return await body(ctx)

        toolset = Above(id="methods")
    else:

        class Below(AsyncToolset):
            @function_tool
            @limit
            async def slow(self, ctx: AsyncRunContext) -> str:
                """Do the slow thing."""
                return await body(ctx)

        toolset = Below(id="methods")
    return TravelAgent(tools=[toolset]), toolset.id


@pytest.mark.parametrize("placement", ["above", "below", "method_above", "method_below"])
async def test_tool_policy_applies_above_or_below_function_tool(placement: str) -> None:
    """`@tool_policy` is honoured above and below `@function_tool`, on plain functions
    and on methods of an AsyncToolset subclass: here its timeout stops the call."""
    gates = Gates()
    agent, _ = slow_tool(placement, gates)
    model = ScriptedLLM(responder=respond_to({"go": call("slow", "s1")}))
    async with text_session(agent, llm=model) as (session, log):
        await session.run(user_input="go")
        await log.wait_for(lambda _: "Update: s1_timed_out" in log.heard, timeout=2)

    record = output_of(model.requests[-1], "s1_timed_out")
    assert "ran out of time after 0.1 seconds" in record


@pytest.mark.parametrize(
    ("option", "match"),
    [
        ({"timeout": -1}, "timeout must be a positive number"),
        ({"timeout": 0}, "timeout must be a positive number"),
        ({"soft_deadline": float("inf")}, "soft_deadline must be a positive number"),
        ({"on_duplicate": "x"}, "on_duplicate must be one of"),
        ({"duplicate_scope": "x"}, "duplicate_scope must be one of"),
        ({"filler": "x"}, "filler must be a Filler or None"),
        ({"cancellable": "no"}, "cancellable must be a bool"),
        ({"templates": {"update": "x"}}, "templates must be a Templates object"),
    ],
)
def test_a_bad_policy_value_is_refused_where_it_is_declared(
    option: dict[str, Any], match: str
) -> None:
    """`@tool_policy(...)` with a value the option cannot take raises ValueError at once,
    before any tool is decorated."""
    with pytest.raises(ValueError, match=match):
        tool_policy(**option)


def test_a_bad_toolset_option_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="duplicate_scope must be one of"):
        AsyncToolset(id="t", duplicate_scope="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        AsyncToolset(id="t", timeout=-1)
