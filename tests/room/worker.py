"""The example's worker, run as its users run it: ``python agent.py start`` (or ``dev``).

:class:`WorkerProcess` starts ``examples/flight_booking/agent.py`` in a subprocess with the
environment pointing at a LiveKit server and an OpenAI-protocol endpoint, waits until the
worker registered with the server, and stops it the way an operator does (SIGINT, then
SIGTERM, then SIGKILL of what is left, each wait bounded), leaving no process behind.
Its log (stdout and stderr) is kept, and the tail of it goes into every failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import psutil

AGENT = Path(__file__).resolve().parents[2] / "examples" / "flight_booking" / "agent.py"

REGISTERED = "registered worker"
"""What the worker logs once the LiveKit server accepted its registration."""

JOB_REQUESTED = "received job request"
"""What the worker logs when the server offers it a job (a room to join)."""

_LOG_TAIL = 60


class WorkerError(RuntimeError):
    """The worker did not do what was awaited; the message ends with its log's tail."""


class WorkerProcess:
    """``python agent.py <command>`` in a subprocess: ``async with WorkerProcess(...) as w``.

    Entering starts it and waits for its registration; leaving stops it (see
    :meth:`stop`).

    Args:
        livekit_url: The LiveKit server (``LIVEKIT_URL``).
        api_key: ``LIVEKIT_API_KEY``.
        api_secret: ``LIVEKIT_API_SECRET``.
        openai_base_url: The OpenAI endpoint (``OPENAI_BASE_URL``).
        mode: ``AGENT_MODE``.
        command: ``start`` or ``dev``.
        env: More environment variables (the backend's latencies, say); they override
            the defaults (the health-check server on a free loopback port, the load in jobs).
        script: The agent's file.
        python: The interpreter (default: this one).

    Attributes:
        log: Every line the worker wrote so far, stdout and stderr together.
        children: The worker's child processes when it was told to stop (its job
            processes and their executor), by pid.
        left_running: Those still running once :meth:`stop` returned (none, unless even
            SIGKILL failed).
    """

    def __init__(
        self,
        *,
        livekit_url: str,
        api_key: str,
        api_secret: str,
        openai_base_url: str,
        mode: str = "pipeline",
        command: str = "start",
        env: Mapping[str, str] | None = None,
        script: Path = AGENT,
        python: str = sys.executable,
    ) -> None:
        self.command = [python, str(script), command]
        self.env = {
            **os.environ,
            "LIVEKIT_URL": livekit_url,
            "LIVEKIT_API_KEY": api_key,
            "LIVEKIT_API_SECRET": api_secret,
            "OPENAI_BASE_URL": openai_base_url,
            "OPENAI_API_KEY": "offline",
            "AGENT_MODE": mode,
            # the worker's health-check server on loopback, on a free port
            "AGENT_HTTP_HOST": "127.0.0.1",
            "AGENT_HTTP_PORT": "0",
            # the tests share the machine's cores with the server and the user: the load
            # the worker reports is its jobs, not the machine's CPU, or the server sends it
            # no job whenever the machine is busy
            "AGENT_MAX_JOBS": "10",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        # the example reads a .env file next to it: what the test sets must win
        self.env.pop("LIVEKIT_AGENT_NAME", None)
        self.log: list[str] = []
        self.children: list[int] = []
        self.left_running: list[int] = []
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._new_line = asyncio.Event()

    async def __aenter__(self) -> WorkerProcess:
        await self.start()
        try:
            await self.wait_for_log(REGISTERED, timeout=60)
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start the worker, in a process group of its own (its job processes join it)."""
        self.process = await asyncio.create_subprocess_exec(
            *self.command,
            env=self.env,
            cwd=AGENT.parent,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        self._reader = asyncio.create_task(self._read(), name="worker.log")

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.log.append(line.decode(errors="replace").rstrip())
            self._new_line.set()
        self._new_line.set()

    def tail(self, lines: int = _LOG_TAIL) -> str:
        """The last ``lines`` lines of the worker's log."""
        return "\n".join(self.log[-lines:])

    def failure(self, what: str) -> WorkerError:
        """An error saying ``what`` went wrong, with the log's tail."""
        return WorkerError(f"{what}\n--- worker log (last {_LOG_TAIL} lines) ---\n{self.tail()}")

    def logged(self, pattern: str | re.Pattern[str], *, start: int = 0) -> str | None:
        """The first log line from index ``start`` on that contains (or matches) ``pattern``."""
        for line in self.log[start:]:
            if pattern.search(line) if isinstance(pattern, re.Pattern) else pattern in line:
                return line
        return None

    async def wait_for_log(
        self, pattern: str | re.Pattern[str], *, timeout: float, start: int = 0
    ) -> str:
        """Wait until the worker logs a line with ``pattern``; returns that line.

        Raises:
            WorkerError: The worker exited first, or ``timeout`` passed.
        """
        deadline = time.monotonic() + timeout
        while True:
            if (line := self.logged(pattern, start=start)) is not None:
                return line
            assert self.process is not None
            if self.process.returncode is not None or (self._reader and self._reader.done()):
                raise self.failure(f"the worker exited ({self.process.returncode}) first")
            left = deadline - time.monotonic()
            if left <= 0:
                raise self.failure(f"the worker did not log {pattern!r} within {timeout:g} s")
            self._new_line.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._new_line.wait(), min(left, 0.5))

    async def stop(self, *, timeout: float = 15) -> int | None:
        """Stop the worker as an operator does; returns its exit code.

        SIGINT first (the worker drains its jobs and exits), SIGTERM if it is still
        running after ``timeout``, then SIGKILL for the worker and anything left of its
        process group (the job processes).
        """
        process = self.process
        if process is None:
            return None
        group = _descendants(process.pid)
        self.children = [p.pid for p in group]
        for sig in (signal.SIGINT, signal.SIGTERM):
            if process.returncode is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(process.wait(), timeout)
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        # the job processes end with the worker; whatever is left of its group goes now
        psutil.wait_procs([p for p in group if _running(p)], timeout=5)
        if any(_running(p) for p in group):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            psutil.wait_procs(group, timeout=5)
        self.left_running = [p.pid for p in group if _running(p)]
        if self._reader is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._reader, 5)
            if not self._reader.done():
                self._reader.cancel()
                await asyncio.gather(self._reader, return_exceptions=True)
        return process.returncode

    def descendants(self) -> list[psutil.Process]:
        """The worker's running child processes (the job processes), recursively."""
        return [p for p in _descendants(self.process.pid) if _running(p)] if self.process else []


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return []


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
