"""Shared builders and helpers of the test suite, importable as ``support`` (pytest's ``pythonpath``).

* :mod:`.tone_bundle`: the tone test bundle (``tests/data/tone_bundle``) and its signal generators;
* :mod:`.streaming_bundle`: the tone bundle with a streaming model (``tests/data/tone_tcn_bundle``);
* :mod:`.tflite_builder`: hand-built TFLite flatbuffers; :mod:`.training_data`: tiny dataset folders;
* :mod:`.hostile`: running ``kws`` in-process and the one-line error promise; a small full disk;
* :mod:`.processes`: the environment of ``kws`` subprocesses, plain WAV writing for ``paplay``.

Regenerate the committed test bundles from ``tests/``: ``python -m support.tone_bundle`` and
``python -m support.streaming_bundle``.
"""

from pathlib import Path

#: the tests folder, the repository root, the committed test data
TESTS_DIR = Path(__file__).resolve().parents[1]
ROOT = TESTS_DIR.parent
DATA_DIR = TESTS_DIR / "data"
