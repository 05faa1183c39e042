"""``kws serve``: a local page that shows what the detector hears, live.

An aiohttp application on 127.0.0.1 with four routes:

``/``            the page (one self-contained HTML file, no CDN: the chart is drawn on a canvas)
``/events``      Server-Sent Events: a ``hello`` with the bundle, labels, thresholds and recent
                 history, then every ``frame``, ``detection``, ``telemetry`` and ``status`` event
``/api/state``   the same snapshot as JSON (for scripts and checks)
``/healthz``     ``ok``

Requests whose ``Host`` is not 127.0.0.1 or localhost are refused (403), so a web site
cannot read the live state through DNS rebinding.

Each page gets its own bounded queue. A slow page loses its oldest events (counted in
``dropped_events``) instead of slowing the detector; a page that goes away is dropped
without disturbing the others; when the source ends, every page is told and the server
keeps serving until it is stopped.
"""

from __future__ import annotations

import asyncio
import errno
import json
import signal
from collections.abc import Callable
from importlib import resources
from typing import Any

from ...detector import KeywordDetector
from ...errors import BackendUnavailableError, ConfigError
from .. import WORKSTATION_EXTRA

try:
    from aiohttp import web
except ImportError as exc:  # pragma: no cover - depends on the install
    raise BackendUnavailableError(
        f"the live view needs the workstation extra (aiohttp): pip install {WORKSTATION_EXTRA}"
    ) from exc

from .live import AudioSource, DetectorPump, Event, LiveState

__all__ = ["LiveServer", "serve", "HOST"]

#: the live view only ever listens on the loopback interface
HOST = "127.0.0.1"

_CLOSE = object()
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})


def _sse(event: Event) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


def _host_allowed(host_header: str | None, port: int) -> bool:
    """True for exactly the names this server answers to: ``127.0.0.1`` or ``localhost``, optionally with
    ``:PORT`` (the port it listens on). No Host header (HTTP/1.0), another name, ``[::1]`` (it does not
    listen on IPv6) or anything after the name (``[::1]evil``, ``localhost.evil``) is refused."""
    if not host_header:
        return False
    name, sep, tail = host_header.partition(":")
    if name.lower() not in _LOCAL_HOSTS:
        return False
    return not sep or (tail.isdigit() and int(tail) == port)


def page_html() -> bytes:
    return resources.files(__package__).joinpath("index.html").read_bytes()


#: where the page carries the state it was served with, rendered before the live stream connects
INITIAL_STATE_TAG = b'<script id="kws-initial" type="application/json">null</script>'


def page_with_state(state: dict[str, Any]) -> bytes:
    """The page with ``state`` (the ``/api/state`` JSON) embedded, so it shows source, level and events at once."""
    text = json.dumps(state, separators=(",", ":")).replace("<", "\\u003c")  # no "</script>" inside
    page = page_html()
    if INITIAL_STATE_TAG not in page:
        raise RuntimeError("index.html lacks the initial-state tag")
    return page.replace(INITIAL_STATE_TAG, INITIAL_STATE_TAG.replace(b">null<", b">" + text.encode() + b"<"))


class LiveServer:
    """The live view of one detector over one source.

    Parameters
    ----------
    detector : the detector to run (its bundle, labels and thresholds are shown)
    source : an :class:`~kws_edge.workstation.web.live.AudioSource` (microphone or file)
    port : TCP port on 127.0.0.1; 0 picks a free one (see :attr:`port` after :meth:`start`)
    client_queue_events : events buffered per page before its oldest are dropped
    keepalive_s : idle time after which a comment line is sent, so dead pages are noticed
    telemetry_interval_s : how often the counters are pushed (the detector's
        :class:`~kws_edge.telemetry.DetectorTelemetry`, if it has one, is included)
    """

    def __init__(self, detector: KeywordDetector, source: AudioSource, *, port: int = 8000,
                 client_queue_events: int = 512, keepalive_s: float = 10.0,
                 telemetry_interval_s: float = 1.0) -> None:
        if not 0 <= int(port) <= 65535:
            raise ConfigError(f"port {port} is out of range; use 1-65535 (or 0 for any free port)")
        self.detector = detector
        self.source = source
        self.port = int(port)
        self.client_queue_events = int(client_queue_events)
        self.keepalive_s = float(keepalive_s)
        self.state = LiveState()
        self.clients: set[asyncio.Queue] = set()
        self.dropped_events = 0
        self.clients_served = 0
        self.telemetry_interval_s = telemetry_interval_s
        self._runner: web.AppRunner | None = None
        self._pump: DetectorPump | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None

    # -- what every page is told first -------------------------------------
    def hello(self) -> Event:
        det, manifest = self.detector, self.detector.bundle.manifest
        return {
            "type": "hello",
            "bundle": {"name": manifest.name, "version": manifest.version, "description": manifest.description},
            "labels": list(det.labels),
            "keywords": list(det.keywords),
            "thresholds": {k: det.config.threshold(k) for k in det.keywords},
            "source": self.source.description,
            "sample_rate_hz": det.sample_rate_hz,
            **self.state.snapshot(),
        }

    # -- fan-out (event loop thread only) -----------------------------------
    def _publish(self, event: Event) -> None:
        self.state.apply(event)
        for q in self.clients:
            if q.full():
                try:
                    q.get_nowait()
                    self.dropped_events += 1
                except asyncio.QueueEmpty:
                    pass
            q.put_nowait(event)

    def _publish_threadsafe(self, event: Event) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._publish, event)
            except RuntimeError:  # loop closed between the check and the call
                pass

    def _extra_counters(self) -> dict[str, float]:
        return {"clients": len(self.clients), "clients_served": self.clients_served,
                "dropped_events": self.dropped_events}

    # -- HTTP handlers -------------------------------------------------------
    def state_now(self) -> dict[str, Any]:
        """What ``/api/state`` returns and the page is rendered with: :meth:`hello` and fresh counters."""
        # fresh counters, not the last pushed ones (the pump's are plain numbers, safe to read here)
        counters = self._pump.counters() if self._pump is not None else {**self.state.counters,
                                                                          **self._extra_counters()}
        return {**self.hello(), "counters": counters}

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(body=page_with_state(self.state_now()), content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-store"})

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state_now())

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _events(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        q: asyncio.Queue = asyncio.Queue(maxsize=self.client_queue_events)
        self.clients.add(q)
        self.clients_served += 1
        try:
            await resp.write(b"retry: 2000\n\n" + _sse(self.hello()))
            while True:
                try:
                    event = await asyncio.wait_for(q.get(), timeout=self.keepalive_s)
                except asyncio.TimeoutError:
                    await resp.write(b": keepalive\n\n")
                    continue
                if event is _CLOSE:
                    break
                batch = [event]
                while not q.empty():  # send whatever queued up in one write
                    nxt = q.get_nowait()
                    if nxt is _CLOSE:
                        await resp.write(b"".join(_sse(e) for e in batch))
                        return resp
                    batch.append(nxt)
                await resp.write(b"".join(_sse(e) for e in batch))
        except (ConnectionError, RuntimeError):
            # The page went away mid-stream (tab closed, network gone); the others carry on.
            pass
        finally:
            self.clients.discard(q)
        return resp

    @web.middleware
    async def _local_only(self, request: web.Request, handler):
        # The page is for this machine only. A web site that re-points its own name at 127.0.0.1
        # (DNS rebinding) reaches the port, but its requests carry its own Host: refuse them.
        host = request.headers.get("Host")
        if not _host_allowed(host, self.port):
            shown = "a request without a Host header" if not host else repr(host[:80].rsplit(":", 1)[0]
                                                                             if host.rsplit(":", 1)[-1].isdigit()
                                                                             else host[:80])
            raise web.HTTPForbidden(text=f"kws serve answers requests for 127.0.0.1:{self.port} or localhost:{self.port} "
                                         f"only, not {shown}\n")
        return await handler(request)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._local_only])
        app.router.add_get("/", self._index)
        app.router.add_get("/events", self._events)
        app.router.add_get("/api/state", self._state)
        app.router.add_get("/healthz", self._health)
        return app

    # -- life cycle ----------------------------------------------------------
    async def start(self) -> str:
        """Bind the port, start the detector thread; returns the page's URL.

        Raises ``ConfigError`` when the port is taken.
        """
        self._loop = asyncio.get_running_loop()
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, self.port, reuse_address=False)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                why = "already in use" if exc.errno == errno.EADDRINUSE else "not allowed for this user"
                raise ConfigError(f"port {self.port} on {HOST} is {why}; choose another with --port "
                                  "(--port 0 picks a free one)") from None
            raise ConfigError(f"cannot listen on {HOST}:{self.port}: {exc.strerror or exc}") from None
        sockets = site._server.sockets if site._server is not None else []  # type: ignore[union-attr]
        if sockets:
            self.port = sockets[0].getsockname()[1]
        self._pump = DetectorPump(self.detector, self.source, self._publish_threadsafe,
                                  telemetry_interval_s=self.telemetry_interval_s,
                                  extra_counters=self._extra_counters)
        self._pump.start()
        return self.url

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    async def stop(self) -> None:
        """Stop the detector thread, close every page's stream, release the port."""
        if self._pump is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._pump.stop)
        for q in list(self.clients):
            try:
                q.put_nowait(_CLOSE)
            except asyncio.QueueFull:
                q.get_nowait()
                q.put_nowait(_CLOSE)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def run(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Start, call ``on_ready(url)``, serve until SIGINT/SIGTERM (or :meth:`request_stop`)."""
        url = await self.start()
        loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._stop_requested.set)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread / Windows
                pass
        try:
            if on_ready is not None:
                on_ready(url)
            await self._stop_requested.wait()
        finally:
            await self.stop()

    def request_stop(self) -> None:
        if self._loop is not None and self._stop_requested is not None:
            self._loop.call_soon_threadsafe(self._stop_requested.set)


def serve(detector: KeywordDetector, source: AudioSource, *, port: int = 8000,
          on_ready: Callable[[str], None] | None = None, **options: Any) -> None:
    """Serve the live view until Ctrl-C or SIGTERM (blocking)."""
    asyncio.run(LiveServer(detector, source, port=port, **options).run(on_ready))
