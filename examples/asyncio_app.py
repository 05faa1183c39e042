"""Consume detections in an asyncio application without blocking its event loop.

Audio capture and the model are blocking work, so they run in one worker thread; each
detection is handed to the event loop with ``loop.call_soon_threadsafe`` and arrives in your
coroutines through an ``async for``. The loop stays free for everything else the app does
(here: a heartbeat task standing in for your web server, MQTT client, UI...).

    python examples/asyncio_app.py                        # microphone, until Ctrl-C
    python examples/asyncio_app.py --wav recording.wav    # a file, played in real time
    python examples/asyncio_app.py --seconds 30 --bundle path/to/bundle

Copy ``detections()`` into your app; it is the whole pattern.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator

import numpy as np

from kws_edge import Detection, KeywordDetector, KwsError, read_wav


async def detections(detector: KeywordDetector, chunks: Iterable[np.ndarray]) -> AsyncIterator[Detection]:
    """Run ``detector`` over ``chunks`` in a worker thread; yield its detections on the event loop."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Detection | BaseException | None] = asyncio.Queue()
    stop = threading.Event()

    def worker() -> None:  # not on the event loop: blocking reads and inference are fine here
        try:
            for chunk in chunks:
                if stop.is_set():
                    break
                for d in detector.process(chunk):
                    loop.call_soon_threadsafe(queue.put_nowait, d)
            item: BaseException | None = None
        except BaseException as exc:  # hand errors (a microphone unplugged...) to the consumer
            item = exc
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is already closed: nobody is listening any more
            pass

    thread = threading.Thread(target=worker, name="kws-detector", daemon=True)
    thread.start()
    try:
        while True:
            item = await queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def microphone_chunks(detector: KeywordDetector, device: str | None, seconds: float | None) -> Iterator[np.ndarray]:
    from kws_edge.microphone import MicrophoneSource

    with MicrophoneSource(sample_rate_hz=detector.sample_rate_hz, device=device) as mic:
        print(f"listening on {mic.device_name or 'the default input'}", flush=True)
        for chunk in mic:
            yield chunk
            if seconds is not None and detector.time_s >= seconds:
                return


def file_chunks(path: str, sample_rate_hz: int, chunk_ms: float = 100.0) -> Iterator[np.ndarray]:
    """A WAV file in real time, as a microphone would deliver it."""
    samples = read_wav(path, sample_rate_hz=sample_rate_hz).samples
    n = int(sample_rate_hz * chunk_ms / 1000)
    start = time.monotonic()
    print(f"playing {path} ({len(samples) / sample_rate_hz:.1f} s)", flush=True)
    for i, offset in enumerate(range(0, len(samples), n)):
        time.sleep(max(0.0, start + (i + 1) * chunk_ms / 1000 - time.monotonic()))  # once "recorded"
        yield samples[offset:offset + n]
    yield np.zeros(sample_rate_hz, np.float32)  # one second of silence lets a word at the very end through


async def heartbeat(state: dict) -> None:
    """Stands for the rest of your app: it keeps ticking while the detector works."""
    while True:
        await asyncio.sleep(0.1)
        state["ticks"] += 1


async def run(args: argparse.Namespace) -> int:
    detector = KeywordDetector.from_bundle(args.bundle)
    if args.wav:
        chunks = file_chunks(args.wav, detector.sample_rate_hz)
    else:
        chunks = microphone_chunks(detector, args.device, args.seconds)
    state = {"ticks": 0}
    beat = asyncio.create_task(heartbeat(state))
    n = 0
    async for d in detections(detector, chunks):
        n += 1
        # Your handler: await anything here (an HTTP call, a database write) without losing audio.
        print(f"{d.label:<4} score {d.score:.2f} at {d.time_s:5.2f} s  (heartbeat ticks so far: {state['ticks']})",
              flush=True)
    beat.cancel()
    print(f"done: {n} detection(s); the event loop ticked {state['ticks']} times meanwhile", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default=None, help="model bundle directory (default: the packaged model)")
    ap.add_argument("--wav", default=None, help="play this WAV file instead of listening to the microphone")
    ap.add_argument("--device", default=None, help="input device index or name")
    ap.add_argument("--seconds", type=float, default=None, help="stop the microphone after this much audio")
    args = ap.parse_args(argv)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KwsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
