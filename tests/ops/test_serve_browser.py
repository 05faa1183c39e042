"""kws serve in a real browser: headless Chromium loads the page while a WAV streams.

Chromium is driven over the DevTools protocol (a websocket, spoken with aiohttp, which the
serve extra brings anyway), so no driver binary or extra package is needed. The test checks
what a person would: the chart is redrawn with new pixels as audio arrives, the known tone-"yes"
appears in the detections list, the input level and the telemetry table fill in, the page says
when the source has ended, and the page throws no JavaScript error. A screenshot is saved for
people (``KWS_SCREENSHOT=path``).

Needs Debian's ``chromium`` (skipped when it is missing).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("aiohttp", reason="kws serve needs the serve extra (aiohttp)")
import aiohttp  # noqa: E402

from support import tone_bundle as tones  # noqa: E402
from kws_edge.audio import write_wav  # noqa: E402
from test_serve_server import start_serve  # noqa: E402  (tests/ is on sys.path under pytest)

HERE = Path(__file__).resolve().parents[1]  # tests/
TONE_BUNDLE = HERE / "data" / "tone_bundle"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)"),
    pytest.mark.skipif(not (TONE_BUNDLE / "manifest.json").exists(), reason="tests/data/tone_bundle is missing"),
]

# The flags known to work on this kind of machine (no sandbox as root, no network, no first-run UI).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,900", "--remote-debugging-port=0",
                  "--remote-allow-origins=*"]


class Chromium:
    """A headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self) -> None:
        self.profile = tempfile.mkdtemp(prefix="kws-chromium-")
        self.proc = subprocess.Popen([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._ids = itertools.count(1)
        self.exceptions: list[str] = []
        self.console_errors: list[str] = []

    async def connect(self, session: aiohttp.ClientSession) -> None:
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"chromium did not start (exit {self.proc.poll()})")
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        async with session.get(f"http://127.0.0.1:{port}/json/list") as r:
            targets = await r.json()
        page = next(t for t in targets if t["type"] == "page")
        self.ws = await session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        self._pending: dict[int, asyncio.Future] = {}
        self._reader = asyncio.create_task(self._read())
        await self.send("Runtime.enable")
        await self.send("Page.enable")

    async def _read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self._pending:
                self._pending.pop(data["id"]).set_result(data)
            elif data.get("method") == "Runtime.exceptionThrown":
                self.exceptions.append(json.dumps(data["params"]["exceptionDetails"])[:500])
            elif data.get("method") == "Runtime.consoleAPICalled" and data["params"]["type"] == "error":
                self.console_errors.append(json.dumps(data["params"]["args"])[:500])

    async def send(self, method: str, **params) -> dict:
        i = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[i] = fut
        await self.ws.send_json({"id": i, "method": method, "params": params})
        reply = await asyncio.wait_for(fut, 30)
        if "error" in reply:
            raise AssertionError(f"{method}: {reply['error']}")
        return reply["result"]

    async def js(self, expression: str):
        r = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in r:
            raise AssertionError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    async def wait_for(self, expression: str, timeout_s: float = 30.0):
        """Poll until ``expression`` is truthy (errors count as not yet: the page may still be loading)."""
        deadline = time.monotonic() + timeout_s
        last = None
        while True:
            r = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
            if "exceptionDetails" in r:
                last = r["exceptionDetails"].get("exception", {}).get("description")
            elif r["result"].get("value"):
                return r["result"]["value"]
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for: {expression} (last error: {last})")
            await asyncio.sleep(0.1)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)




CANVAS_PIXELS = "document.getElementById('chart').toDataURL('image/png')"


def test_page_shows_live_chart_a_yes_event_level_telemetry_and_the_end(tmp_path):
    # 8 s of audio played in real time: noise, a tone-"yes" at 4 s, a tone-"no" at 6 s. The browser
    # is started first (it is the slow part on a busy machine), so the page is up while audio plays.
    wav = tmp_path / "live.wav"
    write_wav(wav, tones.stream([("yes", 4.0), ("no", 6.0)], 8.0, np.random.default_rng(5)), 16000)
    browser = Chromium()
    procs: list[subprocess.Popen] = []

    async def scenario() -> dict:
        async with aiohttp.ClientSession() as session:
            await browser.connect(session)
            server, url = start_serve("--bundle", str(TONE_BUNDLE), "--source", str(wav))
            procs.append(server)
            await browser.send("Page.navigate", url=url)
            await browser.wait_for("window.kws && kws.labels.length === 4")
            await browser.wait_for("kws.framesReceived > 0")
            assert await browser.js("document.getElementById('status').dataset.state") == "live"
            # the chart updates: later frames, new pixels, more draws
            before = await browser.js(f"({{px: {CANVAS_PIXELS}, draws: kws.draws, n: kws.framesReceived}})")
            await asyncio.sleep(1.0)
            after = await browser.js(f"({{px: {CANVAS_PIXELS}, draws: kws.draws, n: kws.framesReceived}})")
            assert after["n"] > before["n"] + 5
            assert after["draws"] > before["draws"]
            assert after["px"] != before["px"]
            # the known "yes" appears as an event
            text = await browser.wait_for(
                "document.querySelector('#events li[data-label=yes]')?.textContent", timeout_s=30)
            # the source ends and the page says so
            status = await browser.wait_for(
                "document.getElementById('status').dataset.state === 'ended' && "
                "document.getElementById('status').textContent", timeout_s=30)
            result = {
                "yes_text": text,
                "status": status,
                "labels_in_list": await browser.js(
                    "[...document.querySelectorAll('#events li')].map(li => li.dataset.label)"),
                "level": await browser.js("document.getElementById('level-text').textContent"),
                "level_pct": await browser.js("Number(document.getElementById('level').dataset.rmsPct)"),
                "telemetry": await browser.js(
                    "Object.fromEntries([...document.querySelectorAll('#telemetry tr')]"
                    ".map(tr => [tr.dataset.key, tr.cells[1].textContent]))"),
                "legend": await browser.js("document.getElementById('legend').textContent"),
            }
            shot = await browser.send("Page.captureScreenshot", format="png")
            out = Path(os.environ.get("KWS_SCREENSHOT", tmp_path / "kws_serve.png"))
            out.write_bytes(base64.b64decode(shot["data"]))
            result["screenshot"] = str(out)
            return result

    try:
        result = asyncio.run(asyncio.wait_for(scenario(), 90))
    finally:
        browser.close()
        for server in procs:
            server.send_signal(signal.SIGTERM)
            server.communicate(timeout=20)
    assert result["yes_text"].startswith("yes score 0.")
    assert " at 4." in result["yes_text"] or " at 5." in result["yes_text"]
    assert result["labels_in_list"] == ["no", "yes"]  # newest first
    assert "file live.wav ended after 8.0 s of audio; 2 detection(s)" in result["status"]
    assert "dBFS rms" in result["level"] and 0 < result["level_pct"] < 100  # noise floor about -54 dBFS
    tel = result["telemetry"]
    assert int(tel["detections_yes"]) == 1 and int(tel["chunks"]) == 160
    assert "drift_score" in tel and "real_time_factor" in tel
    assert "_silence_" in result["legend"] and "yes" in result["legend"]
    assert browser.exceptions == [] and browser.console_errors == []
    assert Path(result["screenshot"]).stat().st_size > 10_000


def test_page_reports_a_lost_server_and_recovers_history_on_reconnect(tmp_path):
    """A server that goes away: the page says so instead of freezing silently."""
    wav = tmp_path / "short.wav"
    write_wav(wav, tones.stream([("yes", 0.5)], 2.0, np.random.default_rng(2)), 16000)
    server, url = start_serve("--bundle", str(TONE_BUNDLE), "--source", str(wav), "--speed", "0")
    browser = Chromium()

    async def scenario() -> tuple[str, str]:
        async with aiohttp.ClientSession() as session:
            await browser.connect(session)
            await browser.send("Page.navigate", url=url)
            # joined after the end: the history (chart and the yes) and the ended status still arrive
            await browser.wait_for("document.getElementById('status').dataset.state === 'ended'")
            await browser.wait_for("!!document.querySelector('#events li[data-label=yes]')")
            assert await browser.js("kws.frames.length") == 40
            server.send_signal(signal.SIGTERM)
            server.communicate(timeout=20)
            text = await browser.wait_for(
                "document.getElementById('status').textContent.includes('server stopped') && "
                "document.getElementById('status').textContent")
            return text, await browser.js("document.getElementById('status').dataset.state")

    try:
        text, state = asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        browser.close()
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert state == "ended"
    assert text.startswith("file short.wav ended after 2.0 s") and text.endswith("(server stopped)")


def test_page_shows_source_level_and_last_event_at_once_without_the_live_stream(tmp_path):
    """The served page carries the state: with /events blocked it still shows what is going on."""
    import urllib.request

    wav = tmp_path / "done.wav"
    write_wav(wav, tones.stream([("yes", 0.5)], 2.0, np.random.default_rng(2)), 16000)
    server, url = start_serve("--bundle", str(TONE_BUNDLE), "--source", str(wav), "--speed", "0")
    for _ in range(100):  # the file is processed at once (--speed 0)
        if json.load(urllib.request.urlopen(url + "api/state", timeout=10))["status"]["state"] == "ended":
            break
        time.sleep(0.1)
    browser = Chromium()

    async def scenario() -> dict:
        async with aiohttp.ClientSession() as session:
            await browser.connect(session)
            await browser.send("Network.enable")
            await browser.send("Network.setBlockedURLs", urls=["*/events*"])  # no Server-Sent Events at all
            await browser.send("Page.navigate", url=url)
            await browser.wait_for("document.readyState === 'complete'")
            page = await browser.js(
                "({bundle: document.getElementById('bundle').textContent,"
                " source: document.getElementById('source').textContent,"
                " state: document.getElementById('status').dataset.state,"
                " status: document.getElementById('status').textContent,"
                " level: document.getElementById('level-text').textContent,"
                " events: [...document.querySelectorAll('#events li')].map(li => li.textContent),"
                " telemetry: document.querySelectorAll('#telemetry tr').length,"
                " streamed: kws.framesReceived})")
            shot = await browser.send("Page.captureScreenshot", format="png")
            (tmp_path / "at_once.png").write_bytes(base64.b64decode(shot["data"]))
            return page

    try:
        page = asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        browser.close()
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=20)
    assert page["streamed"] == 0  # nothing came over the live stream: all of this is the served state
    assert page["bundle"].startswith("model tone-test") and "connecting" not in page["bundle"]
    assert page["source"].startswith("source: ") and "done.wav" in page["source"]
    assert page["state"] == "ended" and "done.wav ended after 2.0 s" in page["status"]
    assert "dBFS rms" in page["level"]
    assert len(page["events"]) == 1 and page["events"][0].startswith("yes score ")
    assert page["telemetry"] > 5
    assert browser.exceptions == []
