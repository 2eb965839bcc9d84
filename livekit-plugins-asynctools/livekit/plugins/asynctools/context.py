"""The run context a background tool receives."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from livekit.agents.voice.events import Userdata_T

from . import _compat
from .templates import UPDATE_TEMPLATE

if TYPE_CHECKING:
    from .background import BackgroundCall


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
            await ctx.update(f"Read {len(pages)} pages, summarizing...")  # spoken when idle
            return summarize(pages)  # spoken when idle, the model may act on it
    """

    def __init__(self, *, run_ctx: _compat.RunContext[Userdata_T], call: BackgroundCall) -> None:
        super().__init__(**_compat.derive_run_context(type(self), run_ctx))
        self._call = call

    async def update(  # type: ignore[override]
        self, message: str | Any, *, template: str = UPDATE_TEMPLATE
    ) -> None:
        """Report progress to the model (and through it, the user).

        The first update is the tool's immediate answer: the model replies to the user
        right away and the tool keeps running in the background. Later updates are added
        to the conversation at once and spoken, merged with any other pending updates
        and results, when the agent and the user are both idle.

        Args:
            message: What happened. A string is wrapped in ``template``; anything else is
                passed to the model as a tool output as it is.
            template: ``str.format`` template with the placeholders ``function_name``,
                ``call_id`` and ``message``. Defaults to ``UPDATE_TEMPLATE``.
        """
        if isinstance(message, str):
            message = template.format(
                function_name=self.function_call.name,
                call_id=self.function_call.call_id,
                message=message,
            )
        self._call.report(message)
