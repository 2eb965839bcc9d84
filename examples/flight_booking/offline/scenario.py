"""The flight-booking conversation, as the local OpenAI server plays the model's part.

Each rule reads what the model was sent (the user's words, the tool outputs, the
instructions of a deferred reply) and answers as a good model would.
"""

from __future__ import annotations

import json
import re
from typing import Any

from openai_server import Answer, Message, Rule, Scenario

RESULTS_MARKER = "New results arrived"
FILLER_MARKER = "Say exactly this, and nothing else:"
ASK_MARKER = "Ask the user this question"
STILL_RUNNING_MARKER = "the user has heard nothing about it for a while"

# the message of an update, without the structured progress the plugin appends to it
_PROGRESS = re.compile(r"reported progress: (.*?)(?: \((?:\d+% done|stage: |about )[^()]*\))?\n")


def _text(message: Message) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _tool_names(messages: list[Message]) -> dict[str, str]:
    names: dict[str, str] = {}
    for m in messages:
        for call in m.get("tool_calls") or []:
            names[call["id"]] = call["function"]["name"]
    return names


def _last_is_user(*words: str) -> Any:
    def when(messages: list[Message]) -> bool:
        last = messages[-1]
        text = _text(last).lower()
        return last.get("role") == "user" and all(w in text for w in words)

    return when


def _last_tool_output_of(name: str) -> Any:
    def when(messages: list[Message]) -> bool:
        last = messages[-1]
        if last.get("role") != "tool":
            return False
        return _tool_names(messages).get(last.get("tool_call_id", "")) == name

    return when


def _answers_this_turn(name: str) -> Any:
    """The model is answering the outputs of this turn, one of them from ``name``."""

    def when(messages: list[Message]) -> bool:
        if messages[-1].get("role") != "tool":
            return False
        names = _tool_names(messages)
        since_user = messages[max(i for i, m in enumerate(messages) if m.get("role") == "user") :]
        return any(
            m.get("role") == "tool" and names.get(m.get("tool_call_id", "")) == name
            for m in since_user
        )

    return when


def _is_results_request(messages: list[Message]) -> bool:
    last = messages[-1]
    return last.get("role") in ("system", "developer") and RESULTS_MARKER in _text(last)


def _output_call_id(message: Message) -> str | None:
    """The call id of a tool output: a tool message, or the message a provider that takes
    no injected function calls gets instead ("Background tool `x` (call_id y) ...")."""
    if message.get("role") == "tool":
        return str(message.get("tool_call_id"))
    if message.get("role") == "user" and (found := _OUTPUT_MESSAGE.match(_text(message))):
        return found.group(1)
    return None


_OUTPUT_MESSAGE = re.compile(r"Background tool `\w+` \(call_id (\S+)\) reported: ")


def _results_answer(messages: list[Message]) -> Answer:
    instructions = _text(messages[-1])
    outputs = [
        _text(m) for m in messages if (cid := _output_call_id(m)) and f"'{cid}'" in instructions
    ]
    spoken: list[str] = []
    calls: list[tuple[str, dict[str, Any]]] = []
    for out in outputs:
        if booking := re.search(r"FL-\d{6}", out):
            spoken.append(f"Your flight is booked, reference {booking.group()}.")
            if booking.group() not in _emailed(messages):
                calls.append(("send_confirmation_email", {"booking_reference": booking.group()}))
        elif hotel := re.search(r"HT-\d{6}", out):
            spoken.append(f"Your hotel is reserved, reference {hotel.group()}.")
        elif "was cancelled" in out:
            spoken.append("The hotel search is cancelled.")
        elif found := _PROGRESS.search(out):
            spoken.append(found.group(1))
    return Answer(text=" ".join(spoken) or "Still working on it.", tool_calls=tuple(calls))


def _emailed(messages: list[Message]) -> set[str]:
    """Booking references the model already asked to email (say, in a reply cut short)."""
    return {
        json.loads(call["function"]["arguments"]).get("booking_reference", "")
        for m in messages
        for call in m.get("tool_calls") or []
        if call["function"]["name"] == "send_confirmation_email"
    }


def _first_update_answer(messages: list[Message]) -> Answer:
    out = _text(messages[-1])
    if found := _PROGRESS.search(out):
        return Answer(text=f"Sure! {found.group(1)} I'll keep you posted.")
    return Answer(text="Done.")


def _cancel_hotel(messages: list[Message]) -> Answer:
    hotel_calls = [cid for cid, name in _tool_names(messages).items() if name == "reserve_hotel"]
    return Answer(tool_calls=(("cancel_task", {"call_id": hotel_calls[-1]}),))


BOOK_PARIS_TOKYO = Answer(
    tool_calls=(
        (
            "search_and_book_flight",
            {"origin": "Paris", "destination": "Tokyo", "date": "2026-12-03"},
        ),
    )
)


def _answering(rule: Rule) -> Rule:
    """``rule``, reading the messages up to the last one the model has to answer.

    A realtime conversation can end with the part of an answer the model said before its
    response was cancelled (a partial assistant message, after the tool output or the
    user's words it was answering); a chat completions request never does.
    """

    def pending(messages: list[Message]) -> list[Message]:
        end = len(messages)
        while end > 1 and messages[end - 1].get("role") == "assistant":
            if messages[end - 1].get("tool_calls"):
                break
            end -= 1
        return messages[:end]

    answer = rule.answer
    return Rule(
        rule.name,
        lambda messages: rule.when(pending(messages)),
        (lambda messages: answer(pending(messages))) if callable(answer) else answer,
    )


def flight_scenario(*, seconds_per_char: float = 0.02) -> Scenario:
    """The scenario of the offline demo and the end-to-end tests."""
    scenario = Scenario(
        seconds_per_char=seconds_per_char,
        rules=[
            Rule("speak background results", _is_results_request, _results_answer),
            Rule(
                "say a filler line",
                lambda m: (
                    m[-1].get("role") in ("system", "developer") and FILLER_MARKER in _text(m[-1])
                ),
                lambda m: Answer(text=_text(m[-1]).split(FILLER_MARKER, 1)[1].strip().strip('"')),
            ),
            Rule(
                "write a filler line",
                lambda m: (
                    m[-1].get("role") in ("system", "developer")
                    and STILL_RUNNING_MARKER in _text(m[-1])
                ),
                Answer(text="I'm still working on it, thanks for waiting."),
            ),
            Rule(
                "ask what a tool asks",
                lambda m: (
                    m[-1].get("role") in ("system", "developer") and ASK_MARKER in _text(m[-1])
                ),
                lambda m: Answer(text=_text(m[-1]).split(ASK_MARKER, 1)[1].split('"')[1]),
            ),
            Rule(
                "confirm the email",
                _last_tool_output_of("send_confirmation_email"),
                Answer(text="I've emailed you the confirmation."),
            ),
            Rule(
                "list running tasks",
                _last_tool_output_of("get_running_tasks"),
                lambda m: Answer(
                    text="Right now I'm working on: "
                    + ", ".join(sorted(set(re.findall(r"'function': '(\w+)'", _text(m[-1])))))
                    + "."
                ),
            ),
            Rule(
                "confirm a cancellation",
                _answers_this_turn("cancel_task"),
                Answer(text="Done, I stopped the hotel search."),
            ),
            Rule(
                "ask before a duplicate booking",
                lambda m: m[-1].get("role") == "tool" and "already running" in _text(m[-1]),
                Answer(text="That flight is already being booked. Do you want a second one?"),
            ),
            Rule(
                "answer a first update",
                lambda m: m[-1].get("role") == "tool",
                _first_update_answer,
            ),
            Rule(
                "book the flight",
                _last_is_user("flight", "tokyo"),
                BOOK_PARIS_TOKYO,
            ),
            Rule(
                "book the flight again",
                _last_is_user("again"),
                BOOK_PARIS_TOKYO,
            ),
            Rule(
                "reserve the hotel",
                _last_is_user("hotel", "reserve"),
                Answer(tool_calls=(("reserve_hotel", {"city": "Tokyo", "nights": 4}),)),
            ),
            Rule(
                "list what runs",
                _last_is_user("running"),
                Answer(tool_calls=(("get_running_tasks", {}),)),
            ),
            Rule("cancel the hotel", _last_is_user("cancel", "hotel"), _cancel_hotel),
            Rule(
                "agree to pay",
                _last_is_user("yes", "pay"),
                Answer(text="Great, paying now."),
            ),
            Rule(
                "decline the duplicate",
                _last_is_user("no"),
                Answer(text="Fine, one booking it is."),
            ),
        ],
    )
    scenario.rules = [_answering(rule) for rule in scenario.rules]
    return scenario
