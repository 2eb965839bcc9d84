"""``AsyncToolset``: the tools whose calls keep running in the background."""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Sequence
from typing import Any, TypeGuard, get_origin, get_type_hints

from livekit.agents import llm
from livekit.agents.llm.utils import function_arguments_to_pydantic_model

from . import _compat
from .background import BackgroundCall
from .context import AsyncRunContext
from .default_texts import CANCEL_REASON_CLOSED, CANCEL_REASON_REPLACED, CONFIRM_DUPLICATE_PARAM
from .events import TaskEvents
from .log import logger
from .management import management_tools
from .policy import (
    DEFAULT_FILLER,
    DUPLICATE_MODES,
    DuplicateMode,
    DuplicateScope,
    EffectivePolicy,
    Filler,
    check_policy,
    effective_policy,
)
from .session_scope import session_scope
from .templates import Templates, text_for

_AnyTool = llm.FunctionTool[Any, Any] | llm.RawFunctionTool[Any, Any]

# The wrapper's type hints, as plain classes: core resolves them on every call. No return
# hint (core never reads it, and would resolve it too); keyword-only parameters, which
# core's binding passes as they are (the bound arguments' positional list stays empty).
_WRAPPER_HINTS: dict[str, Any] = {"ctx": _compat.RunContext, "raw_arguments": dict}
_WRAPPER_SIGNATURE = inspect.Signature(
    [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=hint)
        for name, hint in _WRAPPER_HINTS.items()
    ]
)


class AsyncToolset(llm.Toolset):
    """A toolset whose tools can keep running in the background.

    A tool with an :class:`AsyncRunContext` parameter answers the model with its first
    ``await ctx.update(...)`` and keeps running; its later updates and its result are
    added to the conversation and spoken when the agent and the user are idle, merged
    with everything else pending in the session into one reply. Tools without that
    parameter behave as usual. The toolset also offers the model ``get_running_tasks``
    and ``cancel_task``.

    Put it on ``Agent(tools=[...])`` (its calls are cancelled when that agent hands off)
    or on ``AgentSession(tools=[...])`` (they survive handoffs, until the session ends).

    Args:
        id: The toolset id.
        tools: Tools to include, in addition to the ``@function_tool`` methods of a
            subclass. An ``AsyncToolset`` given here is merged in (its tools keep their
            own duplicate policy); on livekit-agents 1.5.2, whose tool context refuses
            the same tool listed twice, this is how an agent gets several of them.
        on_duplicate_call: What to do when the model calls a tool that is already
            running in this session: ``allow``, ``replace``, ``reject`` or ``confirm``
            (see :data:`DuplicateMode`).
        duplicate_scope: What makes a call a duplicate: the same tool (``name``) or the
            same tool with the same arguments (``name_and_args``).
        timeout: Seconds after which a call is cancelled and recorded as timed out
            (``timed_out`` template); None for no limit.
        soft_deadline: Seconds after which the model is told a call is still running
            (``still_running`` template); None for never.
        filler: What the agent says while a call runs with nothing said about it
            (:class:`Filler`); None for nothing. Defaults to a model-written line after
            20 s of silence, at most 3 times.
        cancellable: Whether ``cancel_task`` may cancel this toolset's calls.
        templates: Texts for this toolset's calls (:class:`Templates`); its tool
            descriptions are set here too.

    Each of these is the default of the toolset's tools; a tool overrides any of them
    with :func:`tool_policy`. ``toolset.events`` emits the lifecycle of its calls.

    Raises:
        ValueError: An option has a value it cannot take.

    Example::

        class Travel(AsyncToolset):
            def __init__(self) -> None:
                super().__init__(id="travel", on_duplicate_call="confirm")

            @function_tool
            async def book_flight(self, ctx: AsyncRunContext, destination: str) -> dict:
                \"\"\"Book a flight to the destination.\"\"\"
                await ctx.update(f"Looking for flights to {destination}...")
                flight = await search(destination)
                await ctx.update(f"Found {flight.number}, booking it...")
                return {"confirmation": await book(flight)}

        agent = Agent(instructions="...", tools=[Travel()])
    """

    def __init__(
        self,
        *,
        id: str,
        tools: Sequence[llm.Tool | llm.Toolset] | None = None,
        on_duplicate_call: DuplicateMode = "confirm",
        duplicate_scope: DuplicateScope = "name",
        timeout: float | None = None,
        soft_deadline: float | None = None,
        filler: Filler | None = DEFAULT_FILLER,
        cancellable: bool = True,
        templates: Templates | None = None,
    ) -> None:
        if on_duplicate_call not in DUPLICATE_MODES:
            raise ValueError(
                f"on_duplicate_call must be one of {', '.join(DUPLICATE_MODES)}, "
                f"got {on_duplicate_call!r}"
            )
        check_policy(
            duplicate_scope=duplicate_scope,
            timeout=timeout,
            soft_deadline=soft_deadline,
            filler=filler,
            cancellable=cancellable,
            templates=templates if templates is not None else Templates(),
        )
        given = list(tools) if tools is not None else []
        # nested AsyncToolsets lend their tools, so the task tools are offered only once
        self._nested = [t for t in given if isinstance(t, AsyncToolset)]
        super().__init__(id=id, tools=[t for t in given if not isinstance(t, AsyncToolset)])
        self._defaults = EffectivePolicy(
            on_duplicate=on_duplicate_call,
            duplicate_scope=duplicate_scope,
            timeout=timeout,
            soft_deadline=soft_deadline,
            filler=filler,
            cancellable=cancellable,
            tool_templates=None,
            toolset_templates=templates,
        )
        self._events = TaskEvents()
        self._calls: set[BackgroundCall] = set()
        # bound once and shared by every call, rather than a new callback per call
        self._forget_call = self._calls.discard
        self._own_tools: list[Any] = [
            self._run_in_background(t) if _is_background_tool(t) else t for t in self._tools
        ]
        for nested in self._nested:
            self._own_tools.extend(nested._own_tools)
        self._tools = [*self._own_tools, *management_tools(templates)]

    @property
    def on_duplicate_call(self) -> DuplicateMode:
        """The duplicate policy of this toolset (its tools' default)."""
        return self._defaults.on_duplicate

    @property
    def events(self) -> TaskEvents:
        """The lifecycle events of this toolset's calls (see :mod:`.events`).

        Example::

            toolset.events.on("task_updated", lambda ev: print(ev.progress.fraction))
        """
        return self._events

    async def aclose(self) -> None:
        """Cancel every call this toolset (and those nested in it) still runs; the model is
        told of each."""
        await super().aclose()
        for nested in self._nested:
            await nested.aclose()
        for call in list(self._calls):
            await call.cancel(CANCEL_REASON_CLOSED)
        self._calls.clear()

    def _run_in_background(self, tool: _AnyTool) -> llm.RawFunctionTool[Any, Any]:
        schema = _raw_schema(tool)
        policy = effective_policy(tool, self._defaults)
        if policy.on_duplicate == "confirm":
            schema["parameters"].setdefault("properties", {})[CONFIRM_DUPLICATE_PARAM] = {
                "type": "boolean",
                "description": "Set to true only when the user confirmed they want a second "
                "run while the same tool is already running.",
                "default": False,
            }

        async def call_in_background(
            *, ctx: _compat.RunContext[Any], raw_arguments: dict[str, Any]
        ) -> Any:
            return await self._call(tool, policy, ctx, dict(raw_arguments))

        # Core binds every call's arguments to this wrapper through its signature and type
        # hints: given as ready objects, they are not parsed from strings on each call.
        call_in_background.__annotations__ = dict(_WRAPPER_HINTS)
        call_in_background.__signature__ = _WRAPPER_SIGNATURE  # type: ignore[attr-defined]
        return llm.function_tool(
            call_in_background,
            raw_schema=schema,
            flags=_compat.forwardable_flags(tool.info.flags),
            **_compat.raw_tool_options(),
        )

    async def _call(
        self,
        tool: _AnyTool,
        policy: EffectivePolicy,
        run_ctx: _compat.RunContext[Any],
        raw_arguments: dict[str, Any],
    ) -> Any:
        """Core's view of one call: returns the call's first update, result or error."""
        scope = session_scope(run_ctx.session)
        confirmed = bool(raw_arguments.pop(CONFIRM_DUPLICATE_PARAM, False))
        if policy.on_duplicate != "allow":
            refusal = await self._apply_duplicate_policy(
                scope, policy, run_ctx, raw_arguments, confirmed
            )
            if refusal is not None:
                logger.debug(
                    "duplicate background call refused",
                    extra={"function": run_ctx.function_call.name},
                )
                return refusal

        call = BackgroundCall(
            tool=tool,
            run_ctx=run_ctx,
            raw_arguments=raw_arguments,
            toolset_id=self.id,
            scope=scope,
            policy=policy,
            toolset_events=self._events,
        )
        call.start()
        self._calls.add(call)
        call.add_done_callback(self._forget_call)
        return await call.first_output()

    async def _apply_duplicate_policy(
        self,
        scope: Any,
        policy: EffectivePolicy,
        run_ctx: _compat.RunContext[Any],
        arguments: dict[str, Any],
        confirmed: bool,
    ) -> str | None:
        """None to go ahead, or the text that tells the model why not (``allow`` never
        comes here)."""
        name = run_ctx.function_call.name
        running = [
            c
            for c in scope.calls
            if c.function_call.name == name
            and c.toolset_id == self.id
            and (policy.duplicate_scope == "name" or _same_arguments(c, arguments))
        ]
        if not running:
            return None
        if policy.on_duplicate == "replace":
            for call in running:
                await call.cancel(CANCEL_REASON_REPLACED)
            return None
        if policy.on_duplicate == "confirm" and confirmed:
            return None
        which = "duplicate_reject" if policy.on_duplicate == "reject" else "duplicate_confirm"
        listing = "\n".join(json.dumps(_describe(c.function_call)) for c in running)
        return text_for(
            which,
            {
                "function_name": name,
                "running_fnc_calls": listing,
                "confirm_param": CONFIRM_DUPLICATE_PARAM,
            },
            run_ctx.session,
            tool=policy.tool_templates,
            toolset=policy.toolset_templates,
        )


def _same_arguments(call: BackgroundCall, arguments: dict[str, Any]) -> bool:
    try:
        theirs = json.loads(call.function_call.arguments or "{}")
    except ValueError:
        return False
    if isinstance(theirs, dict):
        theirs.pop(CONFIRM_DUPLICATE_PARAM, None)
    return bool(theirs == arguments)


def _describe(fnc_call: llm.FunctionCall) -> dict[str, str]:
    return {"call_id": fnc_call.call_id, "name": fnc_call.name, "arguments": fnc_call.arguments}


def _is_background_tool(tool: Any) -> TypeGuard[_AnyTool]:
    if not isinstance(tool, (llm.FunctionTool, llm.RawFunctionTool)):
        return False
    try:
        hints = get_type_hints(tool)
    except Exception:
        return False
    return any(h is AsyncRunContext or get_origin(h) is AsyncRunContext for h in hints.values())


def _raw_schema(tool: _AnyTool) -> dict[str, Any]:
    if isinstance(tool, llm.RawFunctionTool):
        return copy.deepcopy(dict(tool.info.raw_schema))
    model = function_arguments_to_pydantic_model(tool)
    return {
        "name": tool.info.name,
        "description": tool.info.description or "",
        "parameters": model.model_json_schema(),
    }
