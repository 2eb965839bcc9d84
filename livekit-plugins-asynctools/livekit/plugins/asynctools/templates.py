"""How to reword the plugin's texts: per session, agent, toolset, tool or call.

The defaults are public constants in :mod:`~livekit.plugins.asynctools.default_texts`,
each with named ``str.format`` placeholders. To reword one, build a :class:`Templates`
with the texts you want and set it where it should apply:

- per session or per agent: :func:`set_templates` (``set_templates(session, ...)``);
- per toolset: ``AsyncToolset(templates=...)``;
- per tool: ``@tool_policy(templates=...)``;
- per call: ``set_templates(ctx, ...)`` inside the tool, or ``ctx.update(template=...)``
  for one update.

The most specific setting wins, text by text. A template is a ``str.format`` string or a
callable that receives the placeholders as a typed dict; an unknown placeholder is an
error when the :class:`Templates` is built, not when the text is used.
"""

from __future__ import annotations

import string
import weakref
from collections.abc import Callable, Iterable
from typing import Any, cast

from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import is_given

from .default_texts import DEFAULTS, PLACEHOLDERS

Template = str | Callable[[Any], str]
"""A ``str.format`` string, or a callable that receives the placeholders as a dict."""


def check_template(name: str, template: Template) -> None:
    """Raise ``ValueError`` if ``template`` uses a placeholder the text ``name`` lacks.

    Raises:
        ValueError: An unknown placeholder, a malformed format string, or neither a
            string nor a callable.
    """
    if callable(template):
        return
    if not isinstance(template, str):
        raise ValueError(f"template {name!r} must be a str or a callable, got {template!r}")
    allowed = PLACEHOLDERS[name]
    try:
        fields = _fields(template)
    except ValueError as e:
        raise ValueError(f"template {name!r} is not a valid format string: {e}") from e
    for field, conversion in fields:
        if conversion not in (None, "r", "s", "a"):
            raise ValueError(
                f"template {name!r} has a bad conversion {{{field}!{conversion}}}; use !r, !s or !a"
            )
        base = field.split(".", 1)[0].split("[", 1)[0]
        if base == "" or base.isdigit():
            raise ValueError(
                f"template {name!r} uses a positional placeholder {{{field}}}; "
                f"use one of: {', '.join(sorted(allowed)) or 'none'}"
            )
        if base not in allowed:
            raise ValueError(
                f"template {name!r} has an unknown placeholder {{{base}}}; "
                f"it takes: {', '.join(sorted(allowed)) or 'none'}"
            )


def _fields(template: str) -> list[tuple[str, str | None]]:
    """The placeholders of ``template`` with their conversions, those nested in a format
    spec (``{message:{width}}``) included: ``str.format`` fills them in too."""
    fields: list[tuple[str, str | None]] = []
    for _, field, spec, conversion in string.Formatter().parse(template):
        if field is not None:
            fields.append((field, conversion))
        if spec:
            fields.extend(_fields(spec))
    return fields


def render(template: Template, args: dict[str, Any]) -> str:
    """The text of ``template`` with ``args``: callables receive ``args`` as they are."""
    if callable(template):
        return str(template(args))
    return template.format_map(args)  # what format(**args) gives, without a copy of args


class Templates:
    """Texts that replace the plugin's defaults wherever this object is set.

    Every argument is optional; what is not given falls through to the next, less
    specific setting, and finally to the default in
    :mod:`~livekit.plugins.asynctools.default_texts`, where the placeholders of each text
    are the typed dicts named below (``UpdateArgs``...).

    Args:
        update: Wraps ``ctx.update()`` strings (:class:`UpdateArgs`).
        reply: Instructions of the deferred reply (:class:`ReplyArgs`).
        duplicate_reject: Answer of the ``reject`` duplicate policy (:class:`DuplicateArgs`).
        duplicate_confirm: Answer of the ``confirm`` duplicate policy.
        cancelled: Record of a cancelled call (:class:`CancelledArgs`).
        timed_out: Record of a call that ran out of time (:class:`TimedOutArgs`).
        still_running: Update sent at a call's soft deadline (:class:`ElapsedArgs`).
        finished_without_result: Record of a call that returned ``None`` (:class:`CallArgs`).
        filler: Instructions of a model-generated filler line (:class:`ElapsedArgs`).
        reply_interrupted: Note given with results whose reply was cut off
            (:class:`ReceiptArgs`).
        not_heard: History record of results never told before the session ended.
        cancel_refused: Answer of ``cancel_task`` for a call that may not be cancelled.
        ask: Instructions of the question ``ctx.ask()`` has the agent ask (``question``).
        get_running_tasks_description: Description of the ``get_running_tasks`` tool
            (toolset level only: the model sees one such tool per agent).
        cancel_task_description: Description of the ``cancel_task`` tool (toolset level only).

    Raises:
        ValueError: A template uses a placeholder its text does not have.

    Example::

        from livekit.plugins.asynctools import Templates, set_templates

        set_templates(session, Templates(
            update="Progress on {function_name}: {message} ({progress} done)",
            timed_out=lambda a: f"{a['function_name']} gave up after {a['timeout']:.0f}s.",
        ))
    """

    __slots__ = ("_texts",)

    def __init__(
        self,
        *,
        update: NotGivenOr[Template] = NOT_GIVEN,
        reply: NotGivenOr[Template] = NOT_GIVEN,
        duplicate_reject: NotGivenOr[Template] = NOT_GIVEN,
        duplicate_confirm: NotGivenOr[Template] = NOT_GIVEN,
        cancelled: NotGivenOr[Template] = NOT_GIVEN,
        timed_out: NotGivenOr[Template] = NOT_GIVEN,
        still_running: NotGivenOr[Template] = NOT_GIVEN,
        finished_without_result: NotGivenOr[Template] = NOT_GIVEN,
        filler: NotGivenOr[Template] = NOT_GIVEN,
        reply_interrupted: NotGivenOr[Template] = NOT_GIVEN,
        not_heard: NotGivenOr[Template] = NOT_GIVEN,
        cancel_refused: NotGivenOr[Template] = NOT_GIVEN,
        ask: NotGivenOr[Template] = NOT_GIVEN,
        get_running_tasks_description: NotGivenOr[str] = NOT_GIVEN,
        cancel_task_description: NotGivenOr[str] = NOT_GIVEN,
    ) -> None:
        given = {
            "update": update,
            "reply": reply,
            "duplicate_reject": duplicate_reject,
            "duplicate_confirm": duplicate_confirm,
            "cancelled": cancelled,
            "timed_out": timed_out,
            "still_running": still_running,
            "finished_without_result": finished_without_result,
            "filler": filler,
            "reply_interrupted": reply_interrupted,
            "not_heard": not_heard,
            "cancel_refused": cancel_refused,
            "ask": ask,
            "get_running_tasks_description": get_running_tasks_description,
            "cancel_task_description": cancel_task_description,
        }
        self._texts: dict[str, Template] = {
            k: cast(Template, v) for k, v in given.items() if is_given(v)
        }
        for name, template in self._texts.items():
            check_template(name, template)
        for name in ("get_running_tasks_description", "cancel_task_description"):
            if name in self._texts and not isinstance(self._texts[name], str):
                raise ValueError(f"{name} must be a str")

    def get(self, name: str) -> Template | None:
        """The template set here for the text ``name``, or None."""
        return self._texts.get(name)

    def __repr__(self) -> str:
        return f"Templates({', '.join(sorted(self._texts))})"


# templates set on a session, an agent or a run context; weak, so they go with their owner
_configured: weakref.WeakKeyDictionary[Any, Templates] = weakref.WeakKeyDictionary()
# whether set_templates() was ever called: until then a text looks up no session, agent or
# call (asking the weak dictionary whether it is empty is a Python call of its own)
_ever_set = False


def set_templates(target: Any, templates: Templates) -> None:
    """Set the texts used for ``target``: an ``AgentSession``, an ``Agent``, or the
    :class:`~livekit.plugins.asynctools.AsyncRunContext` of one call.

    Setting again replaces what was set before on the same target.

    Example::

        set_templates(session, Templates(reply="Tell the user what {pending_call_ids} found."))
        set_templates(agent, Templates(cancelled="{function_name} stopped ({reason})."))
    """
    global _ever_set
    if not isinstance(templates, Templates):
        raise TypeError(f"expected a Templates object, got {type(templates).__name__}")
    _configured[target] = templates
    _ever_set = True


def templates_of(target: Any) -> Templates | None:
    """The :class:`Templates` set on ``target`` with :func:`set_templates`, if any."""
    if not _ever_set:  # the usual case, on the path of every delivery: no lookup
        return None
    try:
        return _configured.get(target)
    except TypeError:  # not weak-referenceable: nothing can have been set on it
        return None


def text_for(
    name: str,
    args: dict[str, Any],
    session: Any,
    *,
    ctx: Any = None,
    tool: Templates | None = None,
    toolset: Templates | None = None,
) -> str:
    """The text ``name`` with ``args``, from the most specific setting: the call's
    (``ctx``), the tool's, the toolset's, the session's current agent's, the session's,
    then the module default."""
    if not _ever_set and tool is None and toolset is None:
        # nothing set anywhere, the usual case on the path of every delivery: the default,
        # formatted here (each function call on that path costs a few cold microseconds)
        return DEFAULTS[name].format_map(args)
    if _ever_set:
        layers: tuple[Templates | None, ...] = (
            templates_of(ctx) if ctx is not None else None,
            tool,
            toolset,
            templates_of(session.current_agent),
            templates_of(session),
        )
    else:  # nothing set on any session, agent or call: no lookups
        layers = (tool, toolset)
    return render(resolve(name, layers), args)


def resolve(name: str, layers: Iterable[Templates | None]) -> Template:
    """The template for ``name`` from the most specific layer (first) that sets it."""
    for layer in layers:
        if layer is not None and (template := layer.get(name)) is not None:
            return template
    return DEFAULTS[name]
