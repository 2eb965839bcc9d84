"""Suite-wide guards: no test may leak an asyncio task or log an error it did not expect."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator

import pytest


class _ErrorRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def fail_on_unexpected_error_logs(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that logs an ERROR it did not allow with ``expected_log_errors``.

    The marker allows error records containing any of its substrings; some releases log
    an error where others do not (1.5.2 does not log bad tool arguments), so allowed
    errors are not required to appear.
    """
    handler = _ErrorRecords()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
    # the markers of every level (module, class, test) add up
    expected: tuple[str, ...] = tuple(
        text for marker in request.node.iter_markers("expected_log_errors") for text in marker.args
    )
    unexpected = [
        f"{r.name}: {r.getMessage()}"
        for r in handler.records
        if not any(e in r.getMessage() for e in expected)
    ]
    if unexpected:
        pytest.fail("unexpected error logs:\n" + "\n".join(unexpected))


@pytest.fixture(autouse=True)
async def fail_on_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves an asyncio task running once it is over."""
    yield
    current = asyncio.current_task()
    for _ in range(20):  # cancelled tasks need an iteration or two to finish
        leaked = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        if not leaked:
            return
        await asyncio.sleep(0.005)
    pytest.fail("leaked asyncio tasks: " + ", ".join(t.get_name() for t in leaked))
