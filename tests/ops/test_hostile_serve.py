"""``kws serve``'s Host check (issue 22, case 14): exactly the loopback names it serves, nothing else."""

from __future__ import annotations

import asyncio
import socket

import pytest

pytest.importorskip("aiohttp", reason="kws serve needs the serve extra (aiohttp)")

from kws_edge.detector import KeywordDetector  # noqa: E402
from kws_edge.workstation.web.live import FileSource  # noqa: E402
from kws_edge.workstation.web.server import LiveServer  # noqa: E402


def _raw_get(port: int, request: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while b"\r\n" not in data:
            part = s.recv(4096)
            if not part:
                break
            data += part
    return int(data.split(b" ", 2)[1])


def test_case14_host_header_is_checked_exactly(tone_bundle_path):
    detector = KeywordDetector.from_bundle(tone_bundle_path)
    wav = tone_bundle_path.parent / "tone_yes.wav"

    async def scenario():
        server = LiveServer(detector, FileSource(wav, detector.sample_rate_hz, speed=0), port=0)
        await server.start()
        p = server.port
        loop = asyncio.get_running_loop()
        get = lambda req: loop.run_in_executor(None, _raw_get, p, req)  # noqa: E731
        try:
            return {
                "no host (HTTP/1.0)": await get(b"GET /healthz HTTP/1.0\r\n\r\n"),
                "[::1]evil": await get(b"GET /healthz HTTP/1.1\r\nHost: [::1]evil\r\nConnection: close\r\n\r\n"),
                "[::1] (not served)": await get(f"GET /healthz HTTP/1.1\r\nHost: [::1]:{p}\r\nConnection: close"
                                                "\r\n\r\n".encode()),
                "localhost.evil": await get(b"GET /healthz HTTP/1.1\r\nHost: localhost.evil\r\nConnection: close\r\n\r\n"),
                "other port": await get(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{p + 1}\r\nConnection: close"
                                        "\r\n\r\n".encode()),
                "127.0.0.1:port": await get(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nConnection: close"
                                            "\r\n\r\n".encode()),
                "localhost": await get(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
            }
        finally:
            await server.stop()

    status = asyncio.run(asyncio.wait_for(scenario(), 60))
    refused = {k: v for k, v in status.items() if k not in ("127.0.0.1:port", "localhost")}
    assert all(v == 403 for v in refused.values()), status
    assert status["127.0.0.1:port"] == 200 and status["localhost"] == 200, status
