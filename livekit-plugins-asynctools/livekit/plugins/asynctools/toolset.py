"""``AsyncToolset``: the tools whose calls keep running in the background."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any, Literal, TypeGuard, get_origin, get_type_hints

from livekit.agents import llm
from livekit.agents.llm.utils import function_arguments_to_pydantic_model

from . import _compat
from .background import BackgroundCall
from .context import AsyncRunContext
from .log import logger
from .management import cancel_task, get_running_tasks
from .session_scope import session_scope
from .templates import (
    CANCEL_REASON_CLOSED,
    CANCEL_REASON_REPLACED,
    CONFIRM_DUPLICATE_PARAM,
    DUPLICATE_CONFIRM,
    DUPLICATE_REJECT,
)

DuplicateMode = Literal["allow", "replace", "reject", "confirm"]
"""What a toolset does when the model calls a tool that is already running:

- ``allow``: run both.
- ``replace``: cancel the running call (the model is told) and run the new one.
- ``reject``: tell the model it is running and how to cancel it.
- ``confirm``: like ``reject``, unless the model re-calls with ``confirm_duplicate=true``.
"""

_AnyTool = llm.FunctionTool[Any, Any] | llm.RawFunctionTool[Any, Any]

_DUPLICATE_MODES: tuple[DuplicateMode, ...] = ("allow", "replace", "reject", "confirm")


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

    Raises:
        ValueError: ``on_duplicate_call`` is not one of the four modes.

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
    ) -> None:
        if on_duplicate_call not in _DUPLICATE_MODES:
            raise ValueError(
                f"on_duplicate_call must be one of {', '.join(_DUPLICATE_MODES)}, "
                f"got {on_duplicate_call!r}"
            )
        given = list(tools) if tools is not None else []
        # nested AsyncToolsets lend their tools, so the task tools are offered only once
        self._nested = [t for t in given if isinstance(t, AsyncToolset)]
        super().__init__(id=id, tools=[t for t in given if not isinstance(t, AsyncToolset)])
        self._on_duplicate_call: DuplicateMode = on_duplicate_call
        self._calls: set[BackgroundCall] = set()
        # bound once and shared by every call, rather than a new callback per call
        self._forget_call = self._calls.discard
        self._own_tools: list[Any] = [
            self._run_in_background(t) if _is_background_tool(t) else t for t in self._tools
        ]
        for nested in self._nested:
            self._own_tools.extend(nested._own_tools)
        self._tools = [*self._own_tools, get_running_tasks, cancel_task]

    @property
    def on_duplicate_call(self) -> DuplicateMode:
        """The duplicate policy of this toolset."""
        return self._on_duplicate_call

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
        if self._on_duplicate_call == "confirm":
            schema["parameters"].setdefault("properties", {})[CONFIRM_DUPLICATE_PARAM] = {
                "type": "boolean",
                "description": "Set to true only when the user confirmed they want a second "
                "run while the same tool is already running.",
                "default": False,
            }

        async def call_in_background(
            ctx: _compat.RunContext[Any], raw_arguments: dict[str, Any]
        ) -> Any:
            return await self._call(tool, ctx, dict(raw_arguments))

        return llm.function_tool(
            call_in_background,
            raw_schema=schema,
            flags=_compat.forwardable_flags(tool.info.flags),
            **_compat.raw_tool_options(),
        )

    async def _call(
        self,
        tool: _AnyTool,
        run_ctx: _compat.RunContext[Any],
        raw_arguments: dict[str, Any],
    ) -> Any:
        """Core's view of one call: returns the call's first update, result or error."""
        scope = session_scope(run_ctx.session)
        confirmed = bool(raw_arguments.pop(CONFIRM_DUPLICATE_PARAM, False))
        refusal = await self._apply_duplicate_policy(scope, run_ctx.function_call.name, confirmed)
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
        )
        call.start()
        self._calls.add(call)
        call.add_done_callback(self._forget_call)
        return await call.first_output()

    async def _apply_duplicate_policy(self, scope: Any, name: str, confirmed: bool) -> str | None:
        """None to go ahead, or the text that tells the model why not."""
        if self._on_duplicate_call == "allow":
            return None
        running = [
            c for c in scope.calls if c.function_call.name == name and c.toolset_id == self.id
        ]
        if not running:
            return None
        if self._on_duplicate_call == "replace":
            for call in running:
                await call.cancel(CANCEL_REASON_REPLACED)
            return None
        if self._on_duplicate_call == "confirm" and confirmed:
            return None
        listing = "\n".join(json.dumps(_describe(c.function_call)) for c in running)
        template = DUPLICATE_REJECT if self._on_duplicate_call == "reject" else DUPLICATE_CONFIRM
        return template.format(
            function_name=name,
            running_fnc_calls=listing,
            confirm_param=CONFIRM_DUPLICATE_PARAM,
        )


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
