"""kws serve without a browser: the detector pump, the SSE fan-out, and the CLI's bad-input paths.

Real components throughout: the tone test bundle on the real TFLite interpreter, real WAV
files, a real aiohttp server on 127.0.0.1 and real HTTP clients.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("aiohttp", reason="kws serve needs the serve extra (aiohttp)")

import aiohttp  # noqa: E402

from support import tone_bundle as tones  # noqa: E402  (tests/ is on sys.path under pytest)
from kws_edge.audio import write_wav  # noqa: E402
from kws_edge.detector import KeywordDetector  # noqa: E402
from kws_edge.errors import AudioFormatError  # noqa: E402
from kws_edge.workstation.web.live import DetectorPump, FileSource, LiveState, level_dbfs  # noqa: E402
from kws_edge.workstation.web.server import LiveServer  # noqa: E402

HERE = Path(__file__).resolve().parents[1]  # tests/
TONE_BUNDLE = HERE / "data" / "tone_bundle"
pytestmark = pytest.mark.skipif(not (TONE_BUNDLE / "manifest.json").exists(),
                                reason="tests/data/tone_bundle is missing (cd tests && python -m support.tone_bundle)")
SR = 16000


def make_wav(path: Path, events: list[tuple[str, float]], duration_s: float, seed: int = 1) -> Path:
    write_wav(path, tones.stream(events, duration_s, np.random.default_rng(seed)), SR)
    return path


@pytest.fixture(scope="module")
def yes_wav(tmp_path_factory) -> Path:
    """4 s: noise, a tone-"yes" at 1.5 s."""
    return make_wav(tmp_path_factory.mktemp("serve") / "yes.wav", [("yes", 1.5)], 4.0)


@pytest.fixture()
def detector() -> KeywordDetector:
    return KeywordDetector.from_bundle(TONE_BUNDLE)


# ---------------------------------------------------------------- pure parts
def test_level_dbfs_of_silence_and_full_scale_sine():
    assert level_dbfs(np.zeros(800, np.float32)) == (-120.0, -120.0)
    t = np.arange(1600) / SR
    rms, peak = level_dbfs((np.sin(2 * np.pi * 1000 * t)).astype(np.float32))
    assert rms == pytest.approx(-3.0, abs=0.1) and peak == pytest.approx(0.0, abs=0.1)
    rms, _ = level_dbfs((0.1 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))
    assert rms == pytest.approx(-23.0, abs=0.1)


def test_live_state_keeps_bounded_history_and_latest_status():
    st = LiveState(history_frames=3, history_detections=2)
    for i in range(5):
        st.apply({"type": "frame", "t": i, "p": None, "rms_dbfs": -50, "peak_dbfs": -40})
        st.apply({"type": "detection", "label": "yes", "score": 0.9, "time_s": i})
    st.apply({"type": "status", "state": "ended", "message": "done"})
    st.apply({"type": "telemetry", "counters": {"chunks": 5}})
    snap = st.snapshot()
    assert [f["t"] for f in snap["frames"]] == [2, 3, 4]
    assert [d["time_s"] for d in snap["detections"]] == [3, 4]
    assert snap["status"]["state"] == "ended" and snap["counters"] == {"chunks": 5}


def test_pump_turns_a_file_into_frames_a_detection_and_an_end(detector, yes_wav):
    events: list[dict] = []
    source = FileSource(yes_wav, SR, chunk_ms=50, speed=0)
    pump = DetectorPump(detector, source, events.append, telemetry_interval_s=0.0)
    pump.run()
    kinds = [e["type"] for e in events]
    assert events[0] == {"type": "status", "state": "live", "message": "listening to file yes.wav"}
    frames = [e for e in events if e["type"] == "frame"]
    assert len(frames) == 80  # 4 s in 50 ms chunks
    assert frames[0]["p"] is None  # no complete window yet
    assert len(frames[-1]["p"]) == 4 and abs(sum(frames[-1]["p"]) - 1) < 0.05
    assert frames[-1]["t"] == pytest.approx(4.0)
    hits = [e for e in events if e["type"] == "detection"]
    assert [h["label"] for h in hits] == ["yes"]
    assert 1.5 < hits[0]["time_s"] < 2.6
    assert "telemetry" in kinds
    assert events[-1]["type"] == "status" and events[-1]["state"] == "ended"
    assert "ended after 4.0 s of audio; 1 detection(s)" in events[-1]["message"]
    assert pump.counts["chunks"] == 80 and pump.counts["detections_yes"] == 1


def test_pump_reports_a_failing_source_on_the_page(detector):
    class Broken:
        description = "microphone test"

        def __iter__(self):
            yield np.zeros(800, np.float32)
            raise AudioFormatError("device unplugged")

        def close(self):
            pass

    events: list[dict] = []
    DetectorPump(detector, Broken(), events.append).run()
    assert events[-1] == {"type": "status", "state": "error", "message": "microphone test failed: device unplugged"}


def test_file_source_rejects_a_bad_file_before_serving(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wav at all")
    with pytest.raises(AudioFormatError, match="not a WAV file"):
        FileSource(bad, SR)


# ---------------------------------------------------------------- SSE over real HTTP
async def sse_events(resp: aiohttp.ClientResponse):
    """Yield (event, data) pairs from a Server-Sent Events response."""
    name, data = None, []
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if not line:
            if data:
                yield name, json.loads("\n".join(data))
            name, data = None, []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def test_two_pages_one_leaves_mid_stream_the_other_sees_yes_and_the_end(detector, yes_wav):
    async def scenario():
        server = LiveServer(detector, FileSource(yes_wav, SR, chunk_ms=50, speed=1.0), port=0,
                            telemetry_interval_s=0.2)
        url = await server.start()
        try:
            async with aiohttp.ClientSession() as session:
                # page A: reads the hello and a few frames, then its tab is closed mid-stream
                resp_a = await session.get(url + "events")
                n_a = 0
                async for name, data in sse_events(resp_a):
                    if name == "hello":
                        assert data["labels"] == ["_silence_", "_unknown_", "yes", "no"]
                        assert data["thresholds"] == {"yes": 0.8, "no": 0.8}
                    elif name == "frame":
                        n_a += 1
                        if n_a == 3:
                            break
                resp_a.connection.transport.abort()  # an abrupt disconnect, not a polite close
                resp_a.release()
                # page B joins after A is gone and must get everything up to the end
                seen: dict[str, list] = {"frame": [], "detection": [], "status": [], "telemetry": []}
                state = None
                async with session.get(url + "events") as resp_b:
                    assert resp_b.headers["Content-Type"].startswith("text/event-stream")
                    async for name, data in sse_events(resp_b):
                        if name == "hello":  # what happened before B came is in its history
                            seen["detection"].extend(data["detections"])
                        if name in seen:
                            seen[name].append(data)
                        if name == "frame" and len(seen["frame"]) == 10:  # B is in, A left a while ago
                            async with session.get(url + "api/state") as r:
                                state = await r.json()
                        if name == "status" and data["state"] == "ended":
                            break
            return n_a, seen, state
        finally:
            await server.stop()

    n_a, seen, state = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert n_a == 3
    assert len(seen["frame"]) > 10
    assert [d["label"] for d in seen["detection"]] == ["yes"]
    assert seen["status"][-1]["message"].startswith("file yes.wav ended after 4.0 s")
    assert seen["telemetry"] and "real_time_factor" in seen["telemetry"][-1]["counters"]
    # the server noticed A leaving: while B was listening, B was the only page; two were served in all
    assert state["counters"]["clients_served"] == 2
    assert state["counters"]["clients"] == 1
    assert state["status"]["state"] in ("live", "ended")


def test_a_page_that_joins_after_the_end_gets_history_and_the_ended_status(detector, yes_wav):
    async def scenario():
        server = LiveServer(detector, FileSource(yes_wav, SR, speed=0), port=0)
        url = await server.start()
        try:
            for _ in range(200):
                if server.state.status["state"] == "ended":
                    break
                await asyncio.sleep(0.05)
            async with aiohttp.ClientSession() as session:
                async with session.get(url + "events") as resp:
                    async for name, data in sse_events(resp):
                        assert name == "hello"
                        return data
        finally:
            await server.stop()

    hello = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert hello["status"]["state"] == "ended"
    assert [d["label"] for d in hello["detections"]] == ["yes"]
    assert len(hello["frames"]) == 80 and hello["source"] == "file yes.wav"


def test_a_slow_page_loses_its_oldest_events_not_the_detector(detector, yes_wav):
    async def scenario():
        server = LiveServer(detector, FileSource(yes_wav, SR, speed=0), port=0, client_queue_events=4)
        await server.start()
        q: asyncio.Queue = asyncio.Queue(maxsize=4)
        server.clients.add(q)  # a page that never reads
        try:
            for _ in range(200):
                if server.state.status["state"] == "ended":
                    break
                await asyncio.sleep(0.05)
            return q.qsize(), server.dropped_events, [q.get_nowait() for _ in range(q.qsize())]
        finally:
            server.clients.discard(q)
            await server.stop()

    size, dropped, kept = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert size == 4 and dropped > 70
    assert kept[-1]["type"] == "status" and kept[-1]["state"] == "ended"  # the newest survive


# ---------------------------------------------------------------- the CLI
def kws(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from kws_edge.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=60, **kw)


def test_cli_port_in_use_is_one_line_and_exit_2(yes_wav):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = kws("serve", "--bundle", str(TONE_BUNDLE), "--source", str(yes_wav), "--port", str(port))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"error: port {port} on 127.0.0.1 is already in use; choose another with --port (--port 0 picks a free one)"
    ]
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--source", "/no/such.wav"], "error: /no/such.wav: no such file"),
    (["--port", "70000"], "error: --port 70000 is out of range"),
    (["--speed", "-1"], "error: --speed -1.0 must be >= 0"),
    (["--bundle", "/no/bundle"], "error: bundle /no/bundle does not exist"),
    (["--device", "1"], "error: --device applies to --source mic only"),
    (["--threshold", "2"], "error: threshold for 'yes' is 2.0; it must be in (0, 1]"),
])
def test_cli_bad_input_is_one_line_and_exit_2(yes_wav, args, message):
    base = {"--bundle": str(TONE_BUNDLE), "--source": str(yes_wav), "--port": "0"}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    r = kws("serve", *[x for kv in base.items() for x in kv])
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), r.stderr


def test_cli_microphone_that_does_not_exist_is_one_line_and_exit_2():
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError):
        pytest.skip("needs sounddevice and PortAudio (the audio extra, libportaudio2)")
    r = kws("serve", "--bundle", str(TONE_BUNDLE), "--source", "mic", "--device", "no-such-microphone-xyz",
            "--port", "0")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no input device 'no-such-microphone-xyz'"), r.stderr


def test_cli_without_the_serve_extra_names_it(yes_wav):
    code = ("import sys; sys.modules['aiohttp'] = None\n"
            "from kws_edge.cli import main; main()")
    r = subprocess.run([sys.executable, "-c", code, "serve", "--bundle", str(TONE_BUNDLE), "--source", str(yes_wav)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        'error: the live view needs the workstation extra (aiohttp): pip install "kws-edge[workstation]"']


def start_serve(*args: str) -> tuple[subprocess.Popen, str]:
    """Start ``kws serve --port 0 ...``; return the process and the page URL it printed."""
    proc = subprocess.Popen([sys.executable, "-c", "from kws_edge.cli import main; main()", "serve", "--port", "0",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("open "):
            return proc, line.split()[1]
        if not line and proc.poll() is not None:
            raise AssertionError(f"kws serve exited {proc.returncode}: {proc.stderr.read()}")
    proc.kill()
    raise AssertionError("kws serve printed no URL")


def test_cli_serves_a_self_contained_page_and_stops_cleanly_on_sigterm(yes_wav):
    import urllib.request

    proc, url = start_serve("--bundle", str(TONE_BUNDLE), "--source", str(yes_wav), "--speed", "0")
    try:
        assert url.startswith("http://127.0.0.1:")
        page = urllib.request.urlopen(url, timeout=10).read().decode()
        assert '<canvas id="chart">' in page and 'new EventSource("events")' in page
        # no CDN, no external fonts or scripts: the page must work with no internet
        assert "src=\"http" not in page and "href=\"http" not in page and "//cdn" not in page
        assert urllib.request.urlopen(url + "healthz", timeout=10).read() == b"ok"
        for _ in range(100):
            state = json.load(urllib.request.urlopen(url + "api/state", timeout=10))
            if state["status"]["state"] == "ended":
                break
            time.sleep(0.1)
        assert state["status"]["state"] == "ended"
        assert [d["label"] for d in state["detections"]] == ["yes"]
        assert "drift_score" in state["counters"] and "input_rms_dbfs" in state["counters"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert err.strip().splitlines()[-1] == "stopped"
    assert "Traceback" not in err


def test_the_runtime_and_the_cli_do_not_import_the_web_stack():
    code = ("import sys, kws_edge, kws_edge.detector, kws_edge.cli.commands\n"
            "heavy = [m for m in ('aiohttp', 'kws_edge.workstation.web', 'kws_edge.workstation.web.server') if m in sys.modules]\n"
            "print(heavy)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr


def test_requests_for_another_host_name_are_refused(detector, yes_wav):
    """DNS rebinding: a foreign site's name pointed at 127.0.0.1 must not read the live state."""
    async def scenario():
        server = LiveServer(detector, FileSource(yes_wav, SR, speed=0), port=0)
        url = await server.start()
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(url + "api/state", headers={"Host": "evil.example:80"}) as r:
                    refused = (r.status, await r.text())
                async with session.get(url + "healthz", headers={"Host": f"localhost:{server.port}"}) as r:
                    local = r.status
            return refused, local
        finally:
            await server.stop()

    (status, text), local = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert status == 403 and "not 'evil.example'" in text
    assert local == 200


def test_the_page_embeds_its_state_safely():
    from kws_edge.workstation.web.server import INITIAL_STATE_TAG, page_html, page_with_state

    assert INITIAL_STATE_TAG in page_html()
    state = {"bundle": {"description": "</script><script>alert(1)</script>"}, "frames": [], "detections": []}
    page = page_with_state(state).decode()
    assert "<script>alert(1)" not in page and page.count("</script>") == page_html().decode().count("</script>")
    embedded = page.split('<script id="kws-initial" type="application/json">', 1)[1].split("</script>", 1)[0]
    assert json.loads(embedded) == state
