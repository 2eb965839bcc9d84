"""Background (async) tools for LiveKit Agents.

A tool that takes an :class:`AsyncRunContext` answers the model at once with its first
``await ctx.update(...)``, keeps running in the background, and has its later updates
and its result spoken when the agent and the user are idle.

Example::

    from livekit.agents import Agent, function_tool
    from livekit.plugins.asynctools import AsyncRunContext, AsyncToolset

    class Travel(AsyncToolset):
        def __init__(self) -> None:
            super().__init__(id="travel")

        @function_tool
        async def book_flight(self, ctx: AsyncRunContext, destination: str) -> dict:
            \"\"\"Book a flight.\"\"\"
            await ctx.update(f"Searching flights to {destination}...")
            ...
            return {"confirmation": "FL-123"}

    agent = Agent(instructions="You book travel.", tools=[Travel()])

See https://github.com/livekit/agents for more information.
"""

from livekit.agents import Plugin

from .background import BackgroundCall
from .context import AsyncRunContext, BackgroundResult
from .default_texts import (
    ASK_INSTRUCTIONS,
    CANCEL_REASON_CLOSED,
    CANCEL_REASON_FROM_ROOM,
    CANCEL_REASON_REPLACED,
    CANCEL_REASON_REQUESTED,
    CANCEL_REASON_SESSION_ENDED,
    CANCEL_REFUSED,
    CANCEL_TASK_DESCRIPTION,
    CANCELLED_TEMPLATE,
    COMPLETED_WITHOUT_RESULT,
    CONFIRM_DUPLICATE_PARAM,
    DUPLICATE_CONFIRM,
    DUPLICATE_REJECT,
    FILLER_INSTRUCTIONS,
    FILLER_LINE_INSTRUCTIONS,
    GET_RUNNING_TASKS_DESCRIPTION,
    NO_RUNNING_TASKS,
    NOT_HEARD_RECORD,
    REPLY_INSTRUCTIONS,
    REPLY_INTERRUPTED_NOTE,
    STILL_RUNNING_TEMPLATE,
    TIMED_OUT_TEMPLATE,
    UPDATE_TEMPLATE,
)
from .delivery import RECEIPT_KEY, Delivery, DeliveryCoordinator
from .events import (
    DeliveryMode,
    Progress,
    ReplyEvent,
    TaskEnded,
    TaskEvents,
    TaskStarted,
    TaskStatus,
    TaskUpdated,
    task_events,
)
from .log import logger
from .management import cancel_task, get_running_tasks
from .policy import DEFAULT_FILLER, DuplicateMode, DuplicateScope, Filler, ToolPolicy, tool_policy
from .room_tasks import (
    RPC_CANCEL_TASK,
    RPC_LIST_TASKS,
    SCHEMA_VERSION,
    TASKS_TOPIC,
    TaskPublisher,
    TaskRequest,
    default_authorize,
    publish_tasks,
)
from .templates import Templates, set_templates
from .toolset import AsyncToolset
from .version import __version__

__all__ = [
    "AsyncToolset",
    "AsyncRunContext",
    "BackgroundResult",
    "DeliveryMode",
    "Progress",
    "DuplicateMode",
    "DuplicateScope",
    "Filler",
    "DEFAULT_FILLER",
    "ToolPolicy",
    "tool_policy",
    "Templates",
    "set_templates",
    "TaskEvents",
    "task_events",
    "TaskStarted",
    "TaskUpdated",
    "TaskEnded",
    "TaskStatus",
    "ReplyEvent",
    "BackgroundCall",
    "Delivery",
    "DeliveryCoordinator",
    "RECEIPT_KEY",
    "get_running_tasks",
    "cancel_task",
    "publish_tasks",
    "TaskPublisher",
    "TaskRequest",
    "default_authorize",
    "TASKS_TOPIC",
    "RPC_LIST_TASKS",
    "RPC_CANCEL_TASK",
    "SCHEMA_VERSION",
    "UPDATE_TEMPLATE",
    "COMPLETED_WITHOUT_RESULT",
    "CANCELLED_TEMPLATE",
    "TIMED_OUT_TEMPLATE",
    "STILL_RUNNING_TEMPLATE",
    "FILLER_INSTRUCTIONS",
    "FILLER_LINE_INSTRUCTIONS",
    "ASK_INSTRUCTIONS",
    "CANCEL_REASON_REQUESTED",
    "CANCEL_REASON_REPLACED",
    "CANCEL_REASON_CLOSED",
    "CANCEL_REASON_FROM_ROOM",
    "CANCEL_REASON_SESSION_ENDED",
    "CANCEL_REFUSED",
    "DUPLICATE_REJECT",
    "DUPLICATE_CONFIRM",
    "REPLY_INSTRUCTIONS",
    "REPLY_INTERRUPTED_NOTE",
    "NOT_HEARD_RECORD",
    "NO_RUNNING_TASKS",
    "GET_RUNNING_TASKS_DESCRIPTION",
    "CANCEL_TASK_DESCRIPTION",
    "CONFIRM_DUPLICATE_PARAM",
    "__version__",
]


class AsyncToolsPlugin(Plugin):
    """Registers the plugin with livekit-agents (version reporting, logging)."""

    def __init__(self) -> None:
        super().__init__(__name__, __version__, __package__, logger)


Plugin.register_plugin(AsyncToolsPlugin())

# Cleanup docs of unexported modules
_module = dir()
NOT_IN_ALL = [m for m in _module if m not in __all__]

__pdoc__ = {}

for n in NOT_IN_ALL:
    __pdoc__[n] = False
