"""What the offline demo prints of one conversation: a timestamped transcript.

:func:`watch` writes down what the user hears and each background task's start, updates
and end, as they happen; :func:`print_transcript` prints them once the conversation is
over, with the requests the local server received.
"""

from __future__ import annotations

import time
from typing import Any

from openai_server import LocalOpenAIServer

from livekit.plugins.asynctools import TaskStarted, TaskUpdated, task_events


class Transcript:
    """Timestamped lines of one conversation, from the moment it was created."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()
        self.lines: list[str] = []

    def add(self, who: str, text: str) -> None:
        """Write down that ``who`` said (or did) ``text``, now.

        Args:
            who: Who it was: ``user``, ``heard``, ``agent`` or ``task``.
            text: What they said or did.
        """
        self.lines.append(f"[{time.monotonic() - self._t0:5.2f}s] {who:<6} {text}")


def watch(session: Any, transcript: Transcript) -> None:
    """Write down in ``transcript`` what happens in ``session`` from now on.

    The user's transcribed lines (``heard``), the agent's replies (``agent``, marked when
    interrupted) and each background task's start, updates and end (``task``).

    Args:
        session: The agent session, before it starts.
        transcript: Where the lines go.
    """

    def on_item(ev: Any) -> None:
        item = ev.item
        if getattr(item, "role", None) == "user" and item.text_content:
            transcript.add("heard", item.text_content)
        if getattr(item, "role", None) == "assistant" and item.text_content:
            cut = " (interrupted)" if getattr(item, "interrupted", False) else ""
            transcript.add("agent", item.text_content + cut)

    # the plugin's typed task events, the same on every livekit-agents release
    events = task_events(session)

    def on_start(ev: TaskStarted) -> None:
        limit = f", times out after {ev.timeout:g} s" if ev.timeout is not None else ""
        transcript.add("task", f"{ev.function_name} started ({ev.call_id}{limit})")

    events.on("task_started", on_start)

    def on_update(ev: TaskUpdated) -> None:
        if ev.update_id == ev.call_id:
            return  # the call's own answer: the agent says it at once
        progress = ev.progress.describe() if ev.delivery != "silent" else " (silent)"
        transcript.add("task", f"{ev.update_id}: {ev.message.splitlines()[0]}{progress}")

    events.on("task_updated", on_update)
    events.on(
        "task_ended",
        lambda ev: (
            transcript.add("task", f"{ev.call_id} ended: {ev.status}")
            if ev.record_id != ev.call_id
            else None
        ),
    )
    session.on("conversation_item_added", on_item)


def print_transcript(title: str, server: LocalOpenAIServer, transcript: Transcript) -> None:
    """Print one mode's transcript, then what its local server was asked over which sockets.

    Args:
        title: The mode's title, printed as the heading.
        server: The mode's local server, whose requests and connections are listed.
        transcript: The conversation's lines.
    """
    print(f"== {title} ==", *transcript.lines, sep="\n")
    paths = sorted({r.path for r in server.requests})
    sockets = sorted({f"ws://{c.host}{c.path}" for c in server.realtime.connections})
    sockets += sorted(
        {f"wss://{c.host}/ws/...BidiGenerateContent" for c in server.gemini.connections}
    )
    print(f"\n{len(server.requests)} HTTP requests to {paths}, websockets to {sockets}")
    print(f"all to {server.base_url}\n", flush=True)
