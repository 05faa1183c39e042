"""Call one function when the microphone hears "yes" and another when it hears "no".

On a Raspberry Pi with gpiozero, "yes" switches an LED on GPIO17 on and "no" switches it off
(LED + 330 ohm resistor between GPIO17, physical pin 11, and ground). Anywhere else the same
two functions print what the pin would do, so the program runs unchanged on a laptop.

    pip install "kws-edge[audio]"            # plus: apt-get install libportaudio2
    python examples/listen_yes_no.py                      # until Ctrl-C
    python examples/listen_yes_no.py --pin 27 --seconds 60 --bundle path/to/bundle

Replace ``on_yes``/``on_no`` with your own actions. They run on the thread that calls
``detector.process``; keep them short (start a thread or post to a queue for slow work).
"""

from __future__ import annotations

import argparse
import sys
import warnings

from kws_edge import Detection, KeywordDetector, KwsError
from kws_edge.microphone import MicrophoneSource


class PrintedLed:
    """Stands in for ``gpiozero.LED`` on a machine without GPIO (the actions below print the state)."""

    def __init__(self, pin: int) -> None:
        self.pin = f"GPIO{pin}"
        self.is_lit = False

    def on(self) -> None:
        self.is_lit = True

    def off(self) -> None:
        self.is_lit = False


def open_led(pin: int):
    """A real LED through gpiozero when it can drive pins here, else a PrintedLed."""
    try:
        with warnings.catch_warnings():  # gpiozero warns about each pin library it falls back from
            warnings.simplefilter("ignore")
            from gpiozero import LED

            led = LED(pin)
        print(f"output: gpiozero LED on {led.pin}", flush=True)
        return led
    except ImportError as exc:  # gpiozero missing, or BadPinFactory (an ImportError): no GPIO here
        print(f"output: printing only ({type(exc).__name__}: {exc})", flush=True)
        return PrintedLed(pin)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default=None, help="model bundle directory (default: the packaged model)")
    ap.add_argument("--device", default=None, help="input device index or name (python -m sounddevice lists them)")
    ap.add_argument("--pin", type=int, default=17, help="GPIO pin of the LED (BCM numbering)")
    ap.add_argument("--seconds", type=float, default=None, help="stop after this much audio (default: Ctrl-C)")
    args = ap.parse_args(argv)

    led = open_led(args.pin)

    # ---- your actions ---------------------------------------------------------------------
    def on_yes(d: Detection) -> None:
        led.on()
        print(f"yes  (score {d.score:.2f} at {d.time_s:.2f} s) -> {led.pin} on", flush=True)

    def on_no(d: Detection) -> None:
        led.off()
        print(f"no   (score {d.score:.2f} at {d.time_s:.2f} s) -> {led.pin} off", flush=True)

    actions = {"yes": on_yes, "no": on_no}
    # ----------------------------------------------------------------------------------------

    detector = KeywordDetector.from_bundle(args.bundle)
    detector.on_detection(lambda d: actions[d.label](d))

    # 100 ms blocks; the source queues them, so a slow moment in an action loses no audio
    # (and if it ever must drop a block, it counts it: see mic.stats).
    mic = MicrophoneSource(sample_rate_hz=detector.sample_rate_hz, block_samples=detector.sample_rate_hz // 10,
                           device=args.device)
    try:
        with mic:
            print(f"listening on {mic.device_name or 'the default input'}; say yes or no", flush=True)
            for chunk in mic:
                detector.process(chunk)  # calls on_yes / on_no
                if args.seconds is not None and detector.time_s >= args.seconds:
                    break
    except KeyboardInterrupt:
        pass
    print(f"stopped after {detector.time_s:.1f} s; capture: {mic.stats.summary()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KwsError as exc:  # bad bundle, no microphone, ...: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
