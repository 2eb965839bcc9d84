"""Per-tool policies: duplicates, timeouts, fillers, cancellation and texts.

A toolset sets the defaults (``AsyncToolset(timeout=..., on_duplicate_call=...)``); a
tool can override any of them with :func:`tool_policy`, declared next to the tool. The
most specific setting wins. The effective policy of each tool is worked out once, when
the toolset is built, so a call pays nothing for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import is_given

from .templates import Templates

DuplicateMode = Literal["allow", "replace", "reject", "confirm"]
"""What happens when the model calls a tool that is already running:

- ``allow``: run both.
- ``replace``: cancel the running call (the model is told) and run the new one.
- ``reject``: tell the model it is running and how to cancel it.
- ``confirm``: like ``reject``, unless the model re-calls with ``confirm_duplicate=true``.
"""

DuplicateScope = Literal["name", "name_and_args"]
"""What makes a call a duplicate: the same tool (``name``), or the same tool with the
same arguments (``name_and_args``)."""

DUPLICATE_MODES: tuple[DuplicateMode, ...] = ("allow", "replace", "reject", "confirm")
DUPLICATE_SCOPES: tuple[DuplicateScope, ...] = ("name", "name_and_args")

_POLICY_ATTR = "__asynctools_policy__"

_F = TypeVar("_F")


def _positive(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


@dataclass(frozen=True)
class Filler:
    """Short lines the agent says while a call runs with nothing spoken about it.

    After ``after`` seconds in which nothing about the call was said, and the
    conversation is free (the user is not speaking, no other reply is playing), the
    agent says a filler: the next of ``lines``, or, with no lines, one sentence the
    model writes (the ``filler`` template). On a realtime model without a TTS, fixed
    lines are spoken by the model itself. At most ``max_count`` fillers per call; they
    stop when the call ends.

    Args:
        after: Seconds of silence about the call before each filler.
        lines: Fixed lines, used in turn; None for a model-generated line.
        max_count: The most fillers one call may get.

    Raises:
        ValueError: ``after`` is not a positive number, ``max_count`` is below 1, or a
            line is empty.

    Example::

        @tool_policy(filler=Filler(after=8, lines=["Still searching...", "Almost there."]))
        @function_tool
        async def search_flights(ctx: AsyncRunContext, destination: str) -> str: ...
    """

    after: float = 20.0
    lines: Sequence[str] | None = None
    max_count: int = 3

    def __post_init__(self) -> None:
        if not _positive(self.after):
            raise ValueError(
                f"Filler.after must be a positive number of seconds, got {self.after!r}"
            )
        if isinstance(self.max_count, bool) or not isinstance(self.max_count, int):
            raise ValueError(f"Filler.max_count must be an int, got {self.max_count!r}")
        if self.max_count < 1:
            raise ValueError(f"Filler.max_count must be at least 1, got {self.max_count}")
        if self.lines is not None:
            if isinstance(self.lines, str) or not all(
                isinstance(line, str) and line.strip() for line in self.lines
            ):
                raise ValueError("Filler.lines must be a sequence of non-empty strings")
            if not self.lines:
                raise ValueError("Filler.lines is empty: give lines, or None for generated ones")
            object.__setattr__(self, "lines", tuple(self.lines))


DEFAULT_FILLER = Filler()
"""The toolset default: after 20 s with nothing said about a call, up to 3 times, one
sentence the model writes. Pass ``filler=None`` to a toolset or a tool to turn it off."""


@dataclass(frozen=True)
class ToolPolicy:
    """What one tool overrides of its toolset's defaults (unset: the toolset decides).

    Build it with :func:`tool_policy`.
    """

    on_duplicate: NotGivenOr[DuplicateMode] = NOT_GIVEN
    duplicate_scope: NotGivenOr[DuplicateScope] = NOT_GIVEN
    timeout: NotGivenOr[float | None] = NOT_GIVEN
    soft_deadline: NotGivenOr[float | None] = NOT_GIVEN
    filler: NotGivenOr[Filler | None] = NOT_GIVEN
    cancellable: NotGivenOr[bool] = NOT_GIVEN
    templates: NotGivenOr[Templates] = NOT_GIVEN

    def __post_init__(self) -> None:
        check_policy(
            on_duplicate=self.on_duplicate,
            duplicate_scope=self.duplicate_scope,
            timeout=self.timeout,
            soft_deadline=self.soft_deadline,
            filler=self.filler,
            cancellable=self.cancellable,
            templates=self.templates,
        )


def tool_policy(
    *,
    on_duplicate: NotGivenOr[DuplicateMode] = NOT_GIVEN,
    duplicate_scope: NotGivenOr[DuplicateScope] = NOT_GIVEN,
    timeout: NotGivenOr[float | None] = NOT_GIVEN,
    soft_deadline: NotGivenOr[float | None] = NOT_GIVEN,
    filler: NotGivenOr[Filler | None] = NOT_GIVEN,
    cancellable: NotGivenOr[bool] = NOT_GIVEN,
    templates: NotGivenOr[Templates] = NOT_GIVEN,
) -> Callable[[_F], _F]:
    """Declare a background tool's own policy, next to the tool.

    Works above or below ``@function_tool``. What is not given comes from the toolset.

    Args:
        on_duplicate: Duplicate policy of this tool (:data:`DuplicateMode`).
        duplicate_scope: ``name`` or ``name_and_args`` (:data:`DuplicateScope`).
        timeout: Seconds after which the call is cancelled and recorded as timed out;
            None for no limit.
        soft_deadline: Seconds after which the model is told the call is still running
            (``still_running`` template), so it can ask the user to wait or cancel.
        filler: A :class:`Filler`, or None for no fillers.
        cancellable: False to make ``cancel_task`` refuse to cancel this tool's calls.
        templates: Texts for this tool's calls (:class:`~.templates.Templates`).

    Raises:
        ValueError: An option has a value it cannot take.

    Example::

        class Travel(AsyncToolset):
            @tool_policy(timeout=60, soft_deadline=20, on_duplicate="reject", cancellable=False)
            @function_tool
            async def pay(self, ctx: AsyncRunContext, amount: float) -> str: ...
    """
    policy = ToolPolicy(
        on_duplicate=on_duplicate,
        duplicate_scope=duplicate_scope,
        timeout=timeout,
        soft_deadline=soft_deadline,
        filler=filler,
        cancellable=cancellable,
        templates=templates,
    )

    def apply(tool: _F) -> _F:
        # on the plain function, so that @function_tool (and binding to an instance, which
        # rebuilds the tool from it) copies the policy; and on a tool object as it is
        wrapped = getattr(tool, "__wrapped__", None)
        for target in (tool, wrapped):
            if target is not None:
                setattr(target, _POLICY_ATTR, policy)
        return tool

    return apply


def policy_of(tool: Any) -> ToolPolicy | None:
    """The :class:`ToolPolicy` declared on ``tool``, if any."""
    policy = getattr(tool, _POLICY_ATTR, None)
    return policy if isinstance(policy, ToolPolicy) else None


@dataclass(frozen=True, slots=True)
class EffectivePolicy:
    """A tool's policy once its toolset's defaults are filled in."""

    on_duplicate: DuplicateMode
    duplicate_scope: DuplicateScope
    timeout: float | None
    soft_deadline: float | None
    filler: Filler | None
    cancellable: bool
    tool_templates: Templates | None
    toolset_templates: Templates | None


def effective_policy(tool: Any, defaults: EffectivePolicy) -> EffectivePolicy:
    """``defaults`` (the toolset's) overridden by what ``tool`` declares."""
    own = policy_of(tool)
    if own is None:
        return defaults

    def pick(value: Any, default: Any) -> Any:
        return value if is_given(value) else default

    return EffectivePolicy(
        on_duplicate=pick(own.on_duplicate, defaults.on_duplicate),
        duplicate_scope=pick(own.duplicate_scope, defaults.duplicate_scope),
        timeout=pick(own.timeout, defaults.timeout),
        soft_deadline=pick(own.soft_deadline, defaults.soft_deadline),
        filler=pick(own.filler, defaults.filler),
        cancellable=pick(own.cancellable, defaults.cancellable),
        tool_templates=pick(own.templates, None),
        toolset_templates=defaults.toolset_templates,
    )


def check_policy(
    *,
    on_duplicate: Any = NOT_GIVEN,
    duplicate_scope: Any = NOT_GIVEN,
    timeout: Any = NOT_GIVEN,
    soft_deadline: Any = NOT_GIVEN,
    filler: Any = NOT_GIVEN,
    cancellable: Any = NOT_GIVEN,
    templates: Any = NOT_GIVEN,
) -> None:
    """Raise ``ValueError`` for any given option that has a value it cannot take."""
    if is_given(on_duplicate) and on_duplicate not in DUPLICATE_MODES:
        raise ValueError(
            f"on_duplicate must be one of {', '.join(DUPLICATE_MODES)}, got {on_duplicate!r}"
        )
    if is_given(duplicate_scope) and duplicate_scope not in DUPLICATE_SCOPES:
        raise ValueError(
            f"duplicate_scope must be one of {', '.join(DUPLICATE_SCOPES)}, got {duplicate_scope!r}"
        )
    for name, value in (("timeout", timeout), ("soft_deadline", soft_deadline)):
        if is_given(value) and value is not None and not _positive(value):
            raise ValueError(f"{name} must be a positive number of seconds or None, got {value!r}")
    if is_given(filler) and filler is not None and not isinstance(filler, Filler):
        raise ValueError(f"filler must be a Filler or None, got {filler!r}")
    if is_given(cancellable) and not isinstance(cancellable, bool):
        raise ValueError(f"cancellable must be a bool, got {cancellable!r}")
    if is_given(templates) and not isinstance(templates, Templates):
        raise ValueError(f"templates must be a Templates object, got {templates!r}")
