"""What must hold in every conversation of the example agent, on each model's protocol.

:func:`~tests.e2e.example.agent_on_local_server` calls :func:`assert_protocol_held` once
the session is closed, so every end-to-end test checks, besides its own story, that the
client spoke the protocol as the service expects and never left 127.0.0.1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from xai_realtime import XaiRealtimeServer

if TYPE_CHECKING:
    from .example import AgentRun, GeminiRun, RealtimeRun


def assert_protocol_held(run: AgentRun, connections: int) -> None:
    """Check what must hold in every conversation on ``run``'s model.

    Every socket stayed on 127.0.0.1 and the client connected ``connections`` times, where
    it should; on the OpenAI protocol, replies were asked for only when the conversation
    was idle and every response was matched by the scenario (and xAI's differences were
    met); on Gemini Live, every model turn was.

    Args:
        run: The conversation, its session closed.
        connections: How many times the client was to connect.
    """
    assert run.sockets and {address[0] for address in run.sockets} == {"127.0.0.1"}
    if run.model == "gemini":
        _assert_gemini_protocol_held(cast("GeminiRun", run), connections)
        return
    _assert_realtime_protocol_held(cast("RealtimeRun", run), connections)
    if run.model == "xai":
        _assert_xai_differences_held(cast("RealtimeRun", run))


def _assert_realtime_protocol_held(run: RealtimeRun, connections: int) -> None:
    """Replies asked for only when the conversation was idle, nothing the model had
    deleted but what is added again, every response matched by the scenario."""
    busy = [
        (e.payload.get("event_id"), e.response_active, e.user_speaking)
        for e in run.realtime.events
        if e.type == "response.create" and (e.response_active or e.user_speaking)
    ]
    assert busy == [], "replies asked for while a response was active or the user spoke"
    # core answers a tool call by updating the conversation from a copy of it, which can
    # predate outputs the plugin just added (every time on 1.5.17): such an update deletes
    # them, and the plugin adds them again before asking about them. Nothing else is deleted.
    created = [e["item"].get("id") for e in run.realtime.received("conversation.item.create")]
    for deleted in run.realtime.received("conversation.item.delete"):
        assert created.count(deleted["item_id"]) == 2, "deleted and not added again"
    assert [r.id for r in run.realtime.responses if r.rule is None] == []
    host = run.server.base_url.split("/")[2]
    # OpenAI's client asks for its default model; xAI's, for the one it was made with
    model = "gpt-realtime" if run.model == "realtime" else run.session.llm.model
    assert [(c.path, c.model, c.host) for c in run.realtime.connections] == [
        ("/v1/realtime", model, host)
    ] * connections


def _assert_xai_differences_held(run: RealtimeRun) -> None:
    """No request but the realtime websocket; voice and turn detection where xAI reads
    them (top level), or, from clients that nest them as OpenAI does, left unread: xAI's
    defaults (Ara, server VAD) apply."""
    assert run.server.requests == []
    first = run.realtime.received("session.update")[0]["session"]
    nested = ["audio.output.voice", "audio.input.turn_detection"]
    assert isinstance(run.realtime, XaiRealtimeServer)
    assert run.realtime.ignored == ([] if "voice" in first else nested)
    assert run.realtime.voice == "Ara"


def _assert_gemini_protocol_held(run: GeminiRun, connections: int) -> None:
    """Every model turn matched the scenario, and the client set up once on each
    connection, on the v1beta API."""
    assert [t.trigger for t in run.live.turns if t.status == "failed"] == []
    host = run.server.gemini_base_url.split("/")[2]
    model = "models/gemini-2.5-flash-native-audio-preview-12-2025"
    assert [(c.version, c.model, c.host) for c in run.live.connections] == [
        ("v1", model, host)
    ] * connections
    assert len(run.live.received("setup")) == connections
