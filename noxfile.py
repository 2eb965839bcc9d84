"""Project tasks: lint, type check, the test matrix, the room tests, the demos, the benchmarks.

Run everything CI runs with ``uvx nox``; one task with ``uvx nox -s <name>``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["lint", "typecheck", "tests", "room"]

PLUGIN = "./livekit-plugins-asynctools"

# Every livekit-agents release line the plugin supports: the first and last 1.5.x,
# and the newest release of each later minor.
AGENTS_RELEASES = ["1.5.2", "1.5.17", "1.6.10", "1.7.1", "1.8.9"]
LATEST = AGENTS_RELEASES[-1]

TEST_DEPS = [
    "pytest>=8",
    "pytest-asyncio>=0.24",
    "pytest-timeout>=2.3",
    "pytest-xdist>=3.6",
    "hypothesis>=6.100",
    "aiohttp>=3.10",
]
# pytest-xdist workers of the `tests` session; work stealing evens out the long tests
TEST_WORKERS = ["-n", "4", "--dist", "worksteal"]
# what the offline flight-booking demo needs beyond the plugin: the example's VAD, and the
# simulated user's voice (eSpeak NG, library and data inside the wheel)
# and the local Gemini Live server's TLS certificate, made for 127.0.0.1 at start-up
DEMO_DEPS = ["aiohttp>=3.10", "espeakng-loader>=0.2", "cryptography>=42"]
# the room tests: sockets watched across processes, tokens and the server API, the browser
# (the Python package only: the tests drive Debian's Chromium, no browser is downloaded)
ROOM_DEPS = ["psutil>=5.9", "livekit-api>=1.0", "playwright>=1.45"]
LIVEKIT_SERVER = "tests/room/livekit_server.py"
CHROMIUM = Path("/usr/bin/chromium")
WEB = Path("examples/flight_booking/web")


def _silero(release: str) -> str:
    return f"livekit-plugins-silero=={release}"


def _google(release: str) -> str:
    # the Gemini Live client of the example's AGENT_MODE=gemini, tested against the local
    # Live API server; the tests skip the releases whose client lacks what they need
    return f"livekit-plugins-google=={release}"


def _xai(release: str) -> str:
    # the xAI realtime client of the example's AGENT_MODE=xai (an OpenAI realtime client
    # with xAI's changes), tested against the local xAI endpoint; every supported release
    # has realtime.RealtimeModel
    return f"livekit-plugins-xai=={release}"


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
    _install_release(
        session, agents, *TEST_DEPS, *DEMO_DEPS, _silero(agents), _google(agents), _xai(agents)
    )
    # the room tests need a livekit-server, a browser and npm: the `room` session.
    # Most of a test's time is waiting (audio played in real time, timers, local
    # servers): four workers share two cores well; `-- -n 0` runs the tests in one process
    session.run("pytest", "--ignore=tests/room", *TEST_WORKERS, *session.posargs)


@nox.session
def room(session: nox.Session) -> None:
    """The room tests on the newest release: a real livekit-server, the worker, Chromium.

    Builds livekit-server once (Go needed; cached in .cache/), installs Debian's Chromium
    when running as root and it is missing, and the web page's pinned npm packages.
    """
    _install_release(
        session, LATEST, *TEST_DEPS, *DEMO_DEPS, *ROOM_DEPS, _silero(LATEST), _google(LATEST)
    )
    session.run("python", LIVEKIT_SERVER, "--build")
    _ensure_chromium(session)
    _npm_ci(session)
    session.run("pytest", "tests/room", *session.posargs)


@nox.session
def room_demo(session: nox.Session) -> None:
    """The live room demo: livekit-server on loopback, the agent worker, the web page
    (`-- --port 8080`, the default, sets the page's port)."""
    _install_release(session, LATEST, *DEMO_DEPS, *ROOM_DEPS, _silero(LATEST))
    session.run("python", LIVEKIT_SERVER, "--build")
    _npm_ci(session)
    # the server, the local model server, `agent.py dev` and the page's server, on loopback;
    # it prints the page's address and the lines to type; Ctrl-C stops every process
    session.run("python", "tests/room/room_demo.py", *session.posargs)


@nox.session
@nox.parametrize("agents", ["1.5.17", LATEST])
def bench(session: nox.Session, agents: str) -> None:
    """Benchmarks against the release's own async tools; `-- --quick` for a short run."""
    _install_release(session, agents, "aiohttp>=3.10")
    session.run("python", "benchmarks/run.py", *session.posargs)


def _ensure_chromium(session: nox.Session) -> None:
    """Debian's Chromium, which the browser tests drive; apt-get installs it as root."""
    if CHROMIUM.is_file():
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        session.error(
            f"the browser tests need Debian's Chromium at {CHROMIUM}: install it with "
            "`sudo apt-get install -y chromium`, then run this session again"
        )
    session.run("apt-get", "update", external=True)
    session.run(
        "apt-get",
        "install",
        "-y",
        "chromium",
        external=True,
        env={"DEBIAN_FRONTEND": "noninteractive"},
    )


def _npm_ci(session: nox.Session) -> None:
    """The web page's npm packages, exactly as its lockfile pins them."""
    if not (WEB / "package-lock.json").is_file():
        return
    if shutil.which("npm") is None:
        session.error("the web page needs npm (Node.js): `sudo apt-get install -y npm`")
    with session.chdir(WEB):
        session.run("npm", "ci", "--no-audit", "--no-fund", external=True)


@nox.session
def demo(session: nox.Session) -> None:
    """The offline flight-booking demo, every mode, against the local servers."""
    _install_release(session, LATEST, *DEMO_DEPS, _silero(LATEST), _google(LATEST))
    session.run("python", "examples/flight_booking/offline/demo.py", *session.posargs)
