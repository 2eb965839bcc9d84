"""What a background tool works with: its run context, and the result type it may return."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import is_given
from livekit.agents.voice.events import Userdata_T

from . import _compat
from .events import DELIVERY_MODES, NO_PROGRESS, DeliveryMode, Progress
from .policy import Filler
from .templates import Template, check_template, render

if TYPE_CHECKING:
    from .background import BackgroundCall


class BackgroundResult:
    """A background tool's final result, with how it reaches the user.

    Return it instead of the bare value to choose the result's delivery mode
    (:data:`~livekit.plugins.asynctools.DeliveryMode`).

    Args:
        output: What the model gets, as a tool's return value would be.
        delivery: ``idle`` (default), ``silent`` or ``now``.

    Raises:
        ValueError: ``delivery`` is not one of the modes.

    Example::

        @function_tool
        async def watch_gate(ctx: AsyncRunContext, flight: str) -> BackgroundResult:
            await ctx.update(f"Watching the gate of {flight}.")
            gate = await gate_changes(flight)
            return BackgroundResult(f"Gate changed to {gate}", delivery="now")
    """

    __slots__ = ("output", "delivery")

    def __init__(self, output: Any, *, delivery: DeliveryMode = "idle") -> None:
        _check_delivery(delivery)
        self.output = output
        self.delivery: DeliveryMode = delivery

    def __repr__(self) -> str:
        return f"BackgroundResult(delivery={self.delivery!r})"


class AsyncRunContext(_compat.RunContext[Userdata_T]):
    """Run context of a tool that runs in the background.

    Annotate a tool parameter with this type and the tool runs in the background as
    soon as it first calls :meth:`update`; everything else a ``RunContext`` offers
    (``session``, ``userdata``, ``function_call``, ``speech_handle``,
    ``disallow_interruptions()``) works as usual.

    Example::

        @function_tool
        async def search_web(ctx: AsyncRunContext, query: str) -> str:
            await ctx.update(f"Searching the web for {query}...")  # the model answers now
            pages = await slow_search(query)
            await ctx.update(f"Read {len(pages)} pages", progress=0.5, stage="reading")
            return summarize(pages)  # spoken when idle, the model may act on it
    """

    def __init__(self, *, run_ctx: _compat.RunContext[Userdata_T], call: BackgroundCall) -> None:
        super().__init__(**_compat.derive_run_context(type(self), run_ctx))
        # core's RunContext (1.6+) keeps two lists for its own update() and with_filler(),
        # which this class replaces: a running call holds one shared empty tuple instead
        # (112 bytes less a call on CPython 3.11); unused attributes on releases before
        self._updates = self._filler_schedulers = ()  # type: ignore[assignment]
        self._call = call

    async def update(
        self,
        message: str | Any,
        *,
        delivery: NotGivenOr[DeliveryMode] = NOT_GIVEN,
        silent: bool = False,
        progress: NotGivenOr[float] = NOT_GIVEN,
        stage: NotGivenOr[str] = NOT_GIVEN,
        seconds_left: NotGivenOr[float] = NOT_GIVEN,
        template: NotGivenOr[Template | None] = NOT_GIVEN,
    ) -> None:
        """Report progress to the model (and through it, the user).

        The first update is the tool's immediate answer: the model replies to the user
        right away and the tool keeps running in the background. Later updates are added
        to the conversation at once and delivered according to ``delivery``; ``idle``
        ones are merged with any other pending updates and results into one reply.

        Args:
            message: What happened. A string is wrapped in the ``update`` template;
                anything else is passed to the model as a tool output as it is.
            delivery: ``idle`` (default), ``silent`` or ``now``
                (:data:`~livekit.plugins.asynctools.DeliveryMode`).
            silent: Same as ``delivery="silent"`` (core's spelling).
            progress: Fraction done, from 0 to 1.
            stage: Name of the current stage.
            seconds_left: Estimated seconds until the call is done.
            template: This update's template: a ``str.format`` string or a callable of
                :class:`~livekit.plugins.asynctools.default_texts.UpdateArgs`. Defaults to
                the most specific ``update`` template set.

        Raises:
            ValueError: A bad ``progress``, ``stage``, ``seconds_left``, ``delivery`` or
                ``template``; nothing is recorded and the call keeps running.
            RuntimeError: The call has already ended.

        Example::

            await ctx.update("Comparing fares", progress=0.4, stage="search", seconds_left=20)
            await ctx.update("Fare locked", delivery="silent")
            await ctx.update("The gate changed!", delivery="now")
        """
        # most updates give none of the options: nothing to check for them
        mode: DeliveryMode = "idle"
        if delivery is not NOT_GIVEN or silent:
            mode = _delivery_mode(delivery, silent)
        if progress is NOT_GIVEN and stage is NOT_GIVEN and seconds_left is NOT_GIVEN:
            checked = NO_PROGRESS
        else:
            checked = Progress.checked(
                fraction=progress if is_given(progress) else None,
                stage=stage if is_given(stage) else None,
                seconds_left=seconds_left if is_given(seconds_left) else None,
            )
        own_template = template if is_given(template) else None
        if own_template is not None:
            check_template("update", own_template)
        call = self._call
        if isinstance(message, str):
            raw = message
            fnc_call = call.function_call
            args: dict[str, Any] = {
                "function_name": fnc_call.name,
                "call_id": fnc_call.call_id,
                "message": message,
                "details": "" if checked is NO_PROGRESS else checked.describe(),
                "progress": "" if checked.fraction is None else f"{checked.fraction:.0%}",
                "stage": checked.stage or "",
                "seconds_left": "" if checked.seconds_left is None else f"{checked.seconds_left:g}",
            }
            if own_template is not None:
                message = render(own_template, args)
            else:
                message = call.text("update", **args)
        else:
            raw = str(message)
        call.report(message, raw_message=raw, delivery=mode, progress=checked)

    @asynccontextmanager
    async def foreground(  # type: ignore[override,unused-ignore]
        self, *, timeout: float = 30.0
    ) -> AsyncIterator[None]:
        """Hold the conversation's floor while the tool talks with the user.

        Waits until the conversation is free (this call's own pending updates spoken
        first), then keeps every deferred reply and filler of the session, from any
        toolset, from speaking until the block ends. Ask a question and wait for the
        answer inside it (:meth:`ask`). The floor is released when the block ends, when
        the call is cancelled, and at the latest ``timeout`` seconds after it was taken.

        Args:
            timeout: The most seconds the floor is held; also bounds the wait for it.

        Raises:
            TimeoutError: The floor did not become free within ``timeout`` seconds.

        Example::

            async with ctx.foreground():
                answer = await ctx.ask("Shall I pay 192 euros for the flight?")
            if "yes" not in answer.lower():
                return "The user did not confirm the payment."
        """
        from .foreground import hold_floor

        async with hold_floor(self._call, timeout=timeout):
            yield

    @asynccontextmanager
    async def with_filler(
        self,
        source: Any,
        *,
        delay: float = 0,
        interval: float | None = None,
        max_steps: int | None = None,
    ) -> AsyncIterator[None]:
        """Use a filler for this call while the block runs (core's ``with_filler``).

        Inside the block, the call's fillers follow ``source``, their count starting from
        zero; after it, the tool's own filler policy applies again. Wrap one slow step,
        so the line fits what is going on.

        Args:
            source: A :class:`~livekit.plugins.asynctools.Filler`, None for no filler in
                the block, or (core's spelling) one line of text.
            delay: With a line: seconds of silence before it (core's dwell).
            interval: With a line: say it again after this many more seconds of
                silence; None says it at most once.
            max_steps: With a line and an ``interval``: the most times it is said.

        Raises:
            ValueError: ``source`` is a callable (core's per-step callback is not
                supported: use a ``Filler`` with several lines), or ``delay``,
                ``interval`` or ``max_steps`` are given with a ``Filler``.

        Example::

            async with ctx.with_filler(Filler(after=3, lines=["Still booking..."])):
                booking = await book(flight)
        """
        filler = _filler_of(source, delay=delay, interval=interval, max_steps=max_steps)
        fillers = self._call.scope.delivery.fillers
        fillers.track(self._call, filler)
        try:
            yield
        finally:
            if not self._call.done():
                fillers.track(self._call, self._call.policy.filler)

    async def ask(self, question: str, *, timeout: float = 30.0) -> str:
        """Have the agent ask the user ``question``; return what the user answers.

        Use it inside :meth:`foreground`, so that no deferred reply comes between the
        question and the answer. The agent's words are generated by the model from
        ``question`` (so this works on realtime models without a TTS).

        Args:
            question: What to ask, as the agent should say it.
            timeout: The most seconds to wait for the user's answer.

        Raises:
            TimeoutError: The user said nothing within ``timeout`` seconds.
        """
        from .foreground import ask_user

        return await ask_user(self._call, question, timeout=timeout)


def _filler_of(
    source: Any, *, delay: float, interval: float | None, max_steps: int | None
) -> Filler | None:
    if source is None or isinstance(source, Filler):
        if delay != 0 or interval is not None or max_steps is not None:
            raise ValueError("delay, interval and max_steps go with a line of text, not a Filler")
        return source
    if not isinstance(source, str):
        raise ValueError(
            "with_filler() takes a Filler, None or a line of text; for several lines "
            "use Filler(lines=[...])"
        )
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
        raise ValueError(f"delay must be a number >= 0, got {delay!r}")
    # core's delay 0 means "at the next idle moment": the smallest silence that is one
    after = max(float(delay), 0.01)
    if interval is None:
        return Filler(after=after, lines=[source], max_count=1)
    return Filler(after=max(after, interval), lines=[source], max_count=max_steps or 1_000)


def _delivery_mode(delivery: NotGivenOr[DeliveryMode], silent: bool) -> DeliveryMode:
    if not is_given(delivery):
        return "silent" if silent else "idle"
    _check_delivery(delivery)
    if silent and delivery != "silent":
        raise ValueError(f"silent=True contradicts delivery={delivery!r}")
    return delivery


def _check_delivery(delivery: Any) -> None:
    if delivery not in DELIVERY_MODES:
        raise ValueError(f"delivery must be one of {', '.join(DELIVERY_MODES)}, got {delivery!r}")
