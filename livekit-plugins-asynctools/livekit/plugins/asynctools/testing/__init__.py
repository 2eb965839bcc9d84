"""Offline test harness for agents that use background tools.

Scripted fakes that subclass livekit-agents' own base classes, so a test drives a real
``AgentSession`` with no network: :class:`ScriptedLLM` answers from a script and records
what it was sent; :class:`ConversationLog` records what the user heard, in order.

Example::

    from livekit.plugins.asynctools.testing import Reply, ScriptedLLM, ToolCall, text_session

    llm = ScriptedLLM(replies=[Reply(tool_calls=[ToolCall("book_flight", {"to": "Tokyo"})])])
    async with text_session(TravelAgent(), llm=llm) as (session, log):
        await session.run(user_input="book me a flight to Tokyo")
        await log.wait_for_heard(2)
    assert llm.requests[-1].output_ids()[-1].endswith("_finished")
"""

from .conversation import ConversationLog, Line, eventually, text_session
from .scripted_llm import LLMRequest, Reply, ScriptedLLM, ToolCall
from .scripted_realtime import RealtimeReplyRequest, ScriptedRealtimeModel, ScriptedRealtimeSession

__all__ = [
    "ScriptedLLM",
    "Reply",
    "ToolCall",
    "LLMRequest",
    "ScriptedRealtimeModel",
    "ScriptedRealtimeSession",
    "RealtimeReplyRequest",
    "ConversationLog",
    "Line",
    "text_session",
    "eventually",
]
