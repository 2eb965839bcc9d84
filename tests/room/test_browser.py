"""The example's web page in a real browser, against a real livekit-server and worker.

Debian's Chromium, driven by Playwright, opens ``examples/flight_booking/web`` (served by
its own ``serve.py`` app) and joins the room; the browser's fake microphone plays the
user's lines from a WAV file. The worker is ``agent.py start`` in pipeline mode, on the
local OpenAI-protocol server, which recognises the lines by their sound. What the person
at the page sees is checked: the transcript, the flight's card moving and ending with
its booking reference, a second participant's page listing the hotel search and refused
when it cancels, and the user's Cancel button stopping it (an RPC to the agent), which
the agent then says. Screenshots and the pages' logs go to ``tests/room/artifacts/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import re
import secrets
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from .browser_audio import Cue, write_timeline
from .livekit_server import LiveKitServer
from .worker import WorkerProcess

playwright_api = pytest.importorskip("playwright.async_api")

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "examples" / "flight_booking" / "web"
OFFLINE = ROOT / "examples" / "flight_booking" / "offline"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")

if str(OFFLINE) not in sys.path:
    sys.path.insert(0, str(OFFLINE))

from demo import USER_LINES, YES_LINE  # noqa: E402
from openai_server import LocalOpenAIServer  # noqa: E402
from scenario import flight_scenario  # noqa: E402
from user_voice import speak  # noqa: E402

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.is_file(), reason="Debian's Chromium is not installed (apt install chromium)"
    ),
    pytest.mark.skipif(
        not (WEB / "node_modules" / "livekit-client").is_dir(),
        reason="the page's livekit-client is not installed (npm ci in examples/flight_booking/web)",
    ),
    pytest.mark.timeout(240),
]

BOOK_LINE, HOTEL_LINE = USER_LINES[0], USER_LINES[1]
# when the user says each line, in seconds from the moment the page opens the microphone
# (once the agent listens); each gap leaves the agent time to answer in full first
TIMELINE = [
    (2.5, BOOK_LINE),  # -> the search starts, 0.5 after 2 s, then asks to pay (about 11.5 s)
    (18.0, YES_LINE),  # -> booked 2 s later, then the confirmation email (about 25 s)
    (30.0, HOTEL_LINE),  # -> the hotel search starts and runs until cancelled
]
BACKEND = {
    "FLIGHT_SEARCH_LATENCY": "2",
    "FLIGHT_BOOKING_LATENCY": "2",
    # far longer than the test: only the Cancel button ends it (before its 60 s timeout)
    "HOTEL_LATENCY": "600",
    "BACKEND_SPEED": "1",
}
CANCELLED_SAID = "The hotel search is cancelled."
"""What the local scenario's model says of a cancelled hotel search (its "speak
background results" rule, given the plugin's "... was cancelled ..." record)."""

CHROMIUM_ARGS = [
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    # every server of the test is 127.0.0.1: no name is resolved, so Chromium's own requests
    # (accounts.google.com, update.googleapis.com) fail at once, without a DNS query
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    # Chromium keeps only the last --disable-features it is given: Playwright's own list
    # (as of 1.65) comes first, then WebRTC's mDNS responder for local host names, which
    # would listen on 224.0.0.251:5353 and announce on the LAN
    "--disable-features="
    + ",".join(
        [
            "AvoidUnnecessaryBeforeUnloadCheckSync",
            "DestroyProfileOnBrowserClose",
            "HttpsUpgrades",
            "HttpsFirstBalancedModeAutoEnable",
            "LensOverlay",
            "MediaRouter",
            "PaintHolding",
            "ThirdPartyStoragePartitioning",
            "AvoidCorsURLLoaderRestartOnRedirect",
            "OptimizationHints",
            "NetworkTimeServiceQuerying",
            "AimEnabled",
            "PreconnectToSearch",
            "WebRtcHideLocalIpsWithMdns",
        ]
    ),
]

# What the page shows, as it changes: every `data-fraction` of each task card, in order
# (a card can move between two polls, an observer sees each change), and a timed log of
# the status line, the cards' statuses and the transcript's final lines, for a failure's
# report (the microphone's timeline starts with "Microphone on")
WATCH_PAGE = """
window.__fractions = {};
window.__shown = [];
new MutationObserver((mutations) => {
  const t = (performance.now() / 1000).toFixed(2);
  for (const m of mutations) {
    const el = m.target.nodeType === Node.TEXT_NODE ? m.target.parentElement : m.target;
    if (!el || !el.dataset) continue;
    if (m.attributeName === "data-fraction") {
      const seen = (window.__fractions[el.dataset.callId] ??= []);
      if (seen.at(-1) !== el.dataset.fraction) seen.push(el.dataset.fraction);
    } else if (m.attributeName === "data-status") {
      window.__shown.push(`${t} card ${el.dataset.function}: ${el.dataset.status}`);
    } else if (m.attributeName === "data-final" && el.dataset.final === "true") {
      const text = el.querySelector(".text").textContent;
      window.__shown.push(`${t} ${el.dataset.speaker}: ${text}`);
    } else if (el.id === "status") {
      window.__shown.push(`${t} status: ${el.textContent}`);
    }
  }
}).observe(document, {
  subtree: true,
  childList: true,
  characterData: true,
  attributes: true,
  attributeFilter: ["data-fraction", "data-status", "data-final"],
});
"""


@contextlib.asynccontextmanager
async def page_server(livekit_server: LiveKitServer) -> AsyncIterator[str]:
    """The page's own dev server (``serve.py``'s app) on a free loopback port; its URL."""
    from aiohttp import web

    spec = importlib.util.spec_from_file_location("flight_web_serve", WEB / "serve.py")
    assert spec is not None and spec.loader is not None
    serve = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(serve)
    app = serve.make_app(
        url=livekit_server.url, api_key=livekit_server.api_key, api_secret=livekit_server.api_secret
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def chromium(microphone: Path) -> AsyncIterator[Any]:
    """Debian's Chromium, headless, its fake microphone playing ``microphone`` once."""
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={microphone}%noloop"],
        )
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 860})
            await context.grant_permissions(["microphone"])
            yield context
        finally:
            await browser.close()


class Console:
    """What the page wrote to its console, and the exceptions it did not catch."""

    def __init__(self, page: Any) -> None:
        self.lines: list[str] = []
        self.errors: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def _on_console(self, message: Any) -> None:
        self.lines.append(f"{message.type}: {message.text}")
        if message.type == "error":
            self.errors.append(message.text)


async def transcript(page: Any) -> list[tuple[str, str]]:
    """The page's transcript: (speaker, text) per line."""
    rows: list[list[str]] = await page.eval_on_selector_all(
        "#transcript .line",
        "lines => lines.map(l => [l.dataset.speaker, l.querySelector('.text').textContent])",
    )
    return [(speaker, text) for speaker, text in rows]


def card(function: str, status: str | None = None) -> str:
    """The CSS selector of the task card of ``function`` (with that status)."""
    selector = f'.task[data-function="{function}"]'
    return selector + (f'[data-status="{status}"]' if status else "")


async def test_page_shows_tasks_and_cancels_the_hotel(
    livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    """A person at the page sees the conversation and the background tasks, and stops one.

    Talking into the browser's microphone, they see: what they said and what the agent
    answered; the flight's card with its progress moving, then done with the booking
    reference the agent also said; the hotel's card, whose Cancel button stops the
    search through the agent's RPC, after which the agent tells them it is cancelled.
    Someone else in the room sees the running search but may not cancel it. The pages
    log no error.
    """
    microphone = tmp_path / "user.wav"
    cues = write_timeline(microphone, TIMELINE)
    ARTIFACTS.mkdir(exist_ok=True)
    room = f"browser-{secrets.token_hex(4)}"

    async with LocalOpenAIServer(flight_scenario()) as model:
        for cue in cues:
            voice = speak(cue.text)
            model.scenario.speech.learn(cue.text, voice.pcm, voice.sample_rate)
        async with (
            WorkerProcess(
                livekit_url=livekit_server.url,
                api_key=livekit_server.api_key,
                api_secret=livekit_server.api_secret,
                openai_base_url=model.base_url,
                mode="pipeline",
                env=BACKEND,
            ) as worker,
            page_server(livekit_server) as url,
            chromium(microphone) as browser,
        ):
            page = await browser.new_page()
            consoles = [Console(page)]
            await page.add_init_script(WATCH_PAGE)
            try:
                await _converse(page, url, room, consoles)
            except BaseException:
                await _save_failure(page, livekit_server, model, worker, cues)
                raise
            finally:
                logs = [line for console in consoles for line in console.lines]
                (ARTIFACTS / "browser-console.log").write_text("\n".join(logs) + "\n")
                with contextlib.suppress(Exception):
                    shown = await page.evaluate("window.__shown")
                    (ARTIFACTS / "browser-page.log").write_text("\n".join(shown) + "\n")

            errors = [error for console in consoles for error in console.errors]
            assert not errors, "the pages logged errors:\n" + "\n".join(errors)
            # the model learnt of the cancellation as one made from the app, not by a tool
            assert any(
                "cancelled by the user, from the app" in str(r.body.get("messages"))
                for r in model.requests
            )
            assert not [r for r in model.requests if r.rule == "cancel the hotel"]


async def _converse(page: Any, url: str, room: str, consoles: list[Console]) -> None:
    """Join, watch the flight card through to the booking, cancel the hotel; the checks."""
    await page.goto(f"{url}/?room={room}&identity=browser-user")
    await page.click("#join")

    flight = page.locator(card("search_and_book_flight"))
    # mid-conversation: the flight's card past its first step, the payment question ahead
    await page.wait_for_selector(
        card("search_and_book_flight", "running") + ":not([data-fraction='0'])", timeout=60_000
    )
    await page.screenshot(path=ARTIFACTS / "browser-mid.png", full_page=True)

    await page.wait_for_selector(card("search_and_book_flight", "done"), timeout=60_000)
    result = await flight.locator(".result").text_content() or ""
    booked = re.search(r"FL-\d{6}", result)
    assert booked, f"the flight's card shows no booking reference: {result!r}"
    fractions = await page.evaluate("window.__fractions")
    call_id = await flight.get_attribute("data-call-id")
    seen = fractions.get(call_id, [])
    assert len(set(seen)) >= 2, f"the flight's progress did not move: {seen}"
    assert await flight.locator(".bar").evaluate("bar => bar.value") == 1
    await _wait_for_line(page, "agent", f"Your flight is booked, reference {booked.group()}.")

    hotel = page.locator(card("reserve_hotel", "running"))
    await hotel.wait_for(timeout=60_000)
    await _observer_may_not_cancel(page, url, room, consoles)
    await hotel.locator(".cancel").click()
    await page.wait_for_selector(card("reserve_hotel", "cancelled"), timeout=15_000)
    cancelled = page.locator(card("reserve_hotel"))
    assert await cancelled.locator(".cancel").is_hidden()
    assert await cancelled.locator(".error").is_hidden()
    await _wait_for_line(page, "agent", CANCELLED_SAID)
    await page.screenshot(path=ARTIFACTS / "browser-end.png", full_page=True)

    said = await transcript(page)
    for line in (BOOK_LINE, YES_LINE, HOTEL_LINE):
        assert ("user", line) in said, f"the page did not show the user saying {line!r}"


async def _observer_may_not_cancel(page: Any, url: str, room: str, consoles: list[Console]) -> None:
    """A second person joins the room while the hotel search runs: their page lists it
    (the calls that ended are not listed), and their Cancel is refused with the agent's
    reason, changing nothing: only the participant the agent talks with may cancel."""
    observer = await page.context.new_page()
    consoles.append(Console(observer))
    await observer.goto(f"{url}/?room={room}&identity=observer")
    await observer.click("#join")
    listed = observer.locator(card("reserve_hotel", "running"))
    await listed.wait_for(timeout=15_000)
    assert await observer.locator(".task").count() == 1
    await listed.locator(".cancel").click()
    refusal = listed.locator(".error")
    await refusal.wait_for(timeout=15_000)
    assert "observer may not cancel (403)" in (await refusal.text_content() or "")
    await observer.screenshot(path=ARTIFACTS / "browser-observer.png", full_page=True)
    await observer.close()
    assert await page.locator(card("reserve_hotel", "running")).count() == 1


async def _wait_for_line(page: Any, speaker: str, text: str, *, timeout: float = 30) -> None:
    """Wait until the page's transcript shows ``speaker`` saying ``text``, in a final line."""
    deadline = time.monotonic() + timeout
    while True:
        lines = await page.eval_on_selector_all(
            f'#transcript .line[data-speaker="{speaker}"][data-final="true"] .text',
            "texts => texts.map(t => t.textContent)",
        )
        if any(text in line for line in lines):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the transcript never showed the {speaker} saying {text!r}")
        await asyncio.sleep(0.2)


async def _save_failure(
    page: Any,
    livekit_server: LiveKitServer,
    model: LocalOpenAIServer,
    worker: WorkerProcess,
    cues: list[Cue],
) -> None:
    """Keep what explains a failure: a screenshot, what the page showed and when, what
    the model was asked, the worker's and the server's logs."""
    with contextlib.suppress(Exception):
        await page.screenshot(path=ARTIFACTS / "browser-failure.png", full_page=True)
    lines = ["--- the microphone's timeline ---"]
    lines += [f"{c.start:5.2f}-{c.end:5.2f} {c.text}" for c in cues]
    lines += ["--- the page (seconds since it loaded) ---"]
    with contextlib.suppress(Exception):
        lines += await page.evaluate("window.__shown")
    with contextlib.suppress(Exception):
        lines += [await page.locator("#tasks").inner_text()]
    heard = [r.body.get("transcript") for r in model.requests if "transcriptions" in r.path]
    lines += ["--- the model ---", f"STT heard: {heard}"]
    lines += [f"rules: {[r.rule for r in model.requests if r.rule]}"]
    lines += ["--- worker ---", worker.tail(200)]
    # the server's own output, even when another run replaced its log file
    with contextlib.suppress(OSError):
        log = Path(f"/proc/{livekit_server.process.pid}/fd/1").read_text(errors="replace")
        lines += ["--- livekit-server ---", *log.splitlines()[-80:]]
    (ARTIFACTS / "browser-failure.txt").write_text("\n".join(lines) + "\n")
