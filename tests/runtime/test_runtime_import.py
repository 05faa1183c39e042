"""The runtime never imports TensorFlow, training or the rooms above it, and works with TensorFlow made impossible
to import. (That no module imports against the rooms' direction is checked on the source: test_import_rooms.py.)"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from support.processes import kws_subprocess_env


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, env=kws_subprocess_env())


def test_import_kws_edge_does_not_import_tensorflow():
    proc = _run("""
        import sys
        import kws_edge
        import kws_edge.cli.commands          # every registered kws subcommand
        import kws_edge.microphone
        tf = sorted(m for m in sys.modules if m == "tensorflow" or m.startswith(("tensorflow.", "keras")))
        print("TF:", tf)
        assert not tf, tf
        above = sorted(m for m in sys.modules if m.startswith(("kws_edge.training", "kws_edge.converters",
                                                               "kws_edge.pipeline", "kws_edge.workstation")))
        print("rooms above the runtime:", above)
        heavy = sorted(m for m in ("matplotlib", "filelock", "aiohttp", "mlflow", "scipy") if m in sys.modules)
        print("workstation libraries:", heavy)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "TF: []" in proc.stdout
    assert "rooms above the runtime: []" in proc.stdout
    assert "workstation libraries: []" in proc.stdout


def test_runtime_works_with_tensorflow_blocked(tone_bundle_path):
    proc = _run(f"""
        import sys, importlib.abc

        class BlockTensorFlow(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("tensorflow", "keras", "tf_keras"):
                    raise ImportError(f"{{name}} is blocked in this test")
                return None

        sys.meta_path.insert(0, BlockTensorFlow())
        try:
            import tensorflow
        except ImportError as exc:
            print("blocked:", exc)
        else:
            raise SystemExit("the blocker did not work")

        import numpy as np
        import kws_edge
        import kws_edge.cli.commands
        from kws_edge import KeywordDetector, detect_samples
        from kws_edge.engine import Engine
        det = KeywordDetector.from_bundle({str(tone_bundle_path)!r})
        print("backend:", det.backend)
        from kws_edge.audio import read_wav
        clip = read_wav({str(tone_bundle_path.parent / "tone_yes.wav")!r}).samples
        found = detect_samples(det, clip, flush=True)
        print("labels:", [d.label for d in found])
        assert [d.label for d in found] == ["yes"]
        assert not any(m.startswith("tensorflow") for m in sys.modules)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "blocked: tensorflow is blocked" in proc.stdout
    assert "backend: ai_edge_litert" in proc.stdout
    assert "labels: ['yes']" in proc.stdout


def test_engine_with_only_tensorflow_blocked_reports_clearly(tone_bundle_path):
    # forcing the tensorflow backend when TensorFlow cannot be imported is a clear error, not a crash
    proc = _run(f"""
        import sys
        sys.modules["tensorflow"] = None
        from kws_edge.engine import Engine
        from kws_edge.errors import BackendUnavailableError
        try:
            Engine({str(tone_bundle_path / "model.tflite")!r}, backend="tensorflow")
        except BackendUnavailableError as exc:
            print("error:", exc)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "error: the tensorflow interpreter was requested but cannot be imported" in proc.stdout
