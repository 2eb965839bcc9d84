"""What the offline demo's conversation must have reached, checked on its history.

The flight booked and confirmed by email once, the hotel search cancelled on request,
and each feature the flight agent shows: structured progress, a silent update, the
payment question, the filler.
"""

from __future__ import annotations

import re
from typing import Any

from demo_conversation import FILLER_LINE, PAYMENT_QUESTION
from flights import TravelBackend


def outcome_problems(session: Any, backend: TravelBackend) -> list[str]:
    """What the conversation missed: the booking, the email, the cancelled hotel, and
    each feature the agent shows (progress, a silent update, the payment question, the
    filler, the hotel's timeout).

    Args:
        session: The agent session, once the conversation is over.
        backend: The travel backend the agent booked through.

    Returns:
        One line per problem; empty when the conversation reached its outcome.
    """
    problems = []
    items = session.history.items
    # (id, text) of what the model was given: tool outputs, or (where the provider takes
    # no output under an id it never issued, as Gemini) messages naming the call
    records = [(i.call_id, i.output) for i in items if i.type == "function_call_output"]
    records += [
        (found.group(1), text)
        for i in items
        if getattr(i, "role", None) == "user"
        and (
            found := re.match(
                r"Background tool `\w+` \(call_id (\S+)\)", text := i.text_content or ""
            )
        )
    ]
    said = [i.text_content or "" for i in items if getattr(i, "role", None) == "assistant"]
    if len(backend.emails) != 1:
        problems.append(f"expected one confirmation email, got {backend.emails}")
    if not any(call_id.endswith("_cancelled") for call_id, _ in records):
        problems.append("the hotel search was not recorded as cancelled")
    if not any("(50% done, stage: payment)" in output for _, output in records):
        problems.append("no update carried the flight's structured progress")
    if not any("locked" in output for _, output in records) or any("locked" in s for s in said):
        problems.append("the locked fare was not kept for the model alone")
    if not any(s.startswith(PAYMENT_QUESTION) for s in said):
        problems.append("the agent did not ask before paying")
    if not any(s.startswith(FILLER_LINE) for s in said):
        problems.append("no filler was said while the flight was booked")
    return problems
