"""Project tasks: lint, type check, the test matrix, the offline demo and the benchmarks.

Run everything CI runs with ``uvx nox``; one task with ``uvx nox -s <name>``.
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["lint", "typecheck", "tests"]

PLUGIN = "./livekit-plugins-asynctools"

# Every livekit-agents release line the plugin supports: the first and last 1.5.x,
# and the newest release of each later minor.
AGENTS_RELEASES = ["1.5.2", "1.5.17", "1.6.10", "1.7.1", "1.8.9"]
LATEST = AGENTS_RELEASES[-1]

TEST_DEPS = [
    "pytest>=8",
    "pytest-asyncio>=0.24",
    "pytest-timeout>=2.3",
    "hypothesis>=6.100",
    "aiohttp>=3.10",
]
# what the offline flight-booking demo needs beyond the plugin: the example's VAD, and the
# simulated user's voice (eSpeak NG, library and data inside the wheel)
# and the local Gemini Live server's TLS certificate, made for 127.0.0.1 at start-up
DEMO_DEPS = ["aiohttp>=3.10", "espeakng-loader>=0.2", "cryptography>=42"]


def _silero(release: str) -> str:
    return f"livekit-plugins-silero=={release}"


def _google(release: str) -> str:
    # the Gemini Live client of the example's AGENT_MODE=gemini, tested against the local
    # Live API server; the tests skip the releases whose client lacks what they need
    return f"livekit-plugins-google=={release}"


def _install_release(session: nox.Session, release: str, *extra: str) -> None:
    pins = [f"livekit-agents=={release}", f"livekit-plugins-openai=={release}"]
    if release.startswith("1.5."):
        # livekit-plugins-openai 1.5.x predates openai 3 and breaks on it.
        pins.append("openai<3")
    session.install("-e", PLUGIN, *pins, *extra)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy (strict for the plugin) against the newest supported release."""
    _install_release(session, LATEST, "mypy>=1.11", *TEST_DEPS)
    session.run("mypy", "livekit-plugins-asynctools/livekit")


@nox.session
@nox.parametrize("agents", AGENTS_RELEASES)
def tests(session: nox.Session, agents: str) -> None:
    """The whole test suite on one livekit-agents release."""
    _install_release(session, agents, *TEST_DEPS, *DEMO_DEPS, _silero(agents), _google(agents))
    session.run("pytest", *session.posargs)


@nox.session
@nox.parametrize("agents", ["1.5.17", LATEST])
def bench(session: nox.Session, agents: str) -> None:
    """Benchmarks against the release's own async tools; `-- --quick` for a short run."""
    _install_release(session, agents, "aiohttp>=3.10")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The offline flight-booking demo, both modes, against the local OpenAI server."""
    _install_release(session, LATEST, *DEMO_DEPS, _silero(LATEST))
    session.run("python", "examples/flight_booking/offline/demo.py", *session.posargs)
