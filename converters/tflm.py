"""Models measured in the real TensorFlow Lite Micro interpreter (the ``tflite-micro`` PyPI package).

A microcontroller profile (``runtime = "tflite-micro"``) is checked against what
the TFLM interpreter itself needs, not against the static peak-activation lower
bound of :mod:`.analysis`:

* **arena**: the smallest tensor arena with which the interpreter's
  ``AllocateTensors`` succeeds, found by bisection of the arena size
  (:func:`measure_arena`). The wrapper's only memory figure is the
  RecordingMicroAllocator's "arena allocation total", printed on fd 2 by
  ``print_allocations()``; it is recorded too (``arena_used_bytes``) but it is
  not the answer: it leaves out the memory planner's temporary buffers, which
  must fit while tensors are allocated (the shipped streaming model reports
  16,880 B used and needs 18,752 B), and a few bytes less than it can work when
  the arena's end falls on an alignment boundary. The search runs in a child
  process (an arena far too small crashes this build instead of failing) and
  its boundary is confirmed in two fresh processes.
* **parity**: int8 outputs of TFLM against LiteRT's builtin kernels (TFLM's
  reference kernels share their arithmetic; XNNPACK rounds differently) on the
  same int8 inputs: argmax agreement and the largest int8 difference of any
  output. A window model is compared clip by clip; a streaming model
  closed-loop, each interpreter feeding back its own state
  (:func:`window_parity`, :func:`streaming_parity`).

The package is an optional dependency (the ``train`` extra); it is imported
lazily and its absence is a :class:`BackendUnavailableError` that says how to
install it. No TensorFlow here.

``python -m kws_edge.converters.tflm BUNDLE`` measures an existing bundle's
models and records the figures in its manifest (see :func:`record_in_bundle`).
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from kws_edge.bundle.budgets import ArenaRecord, Budgets, TflmBuild, TflmModelRecord, TflmParity, TflmRecord
from kws_edge.engine import captured_native_stderr
from kws_edge.errors import BackendUnavailableError, ConversionError
from kws_edge.streaming import tensor_roles

__all__ = [
    "TflmCheck",
    "TflmInterpreter",
    "tflm_build",
    "import_tflm",
    "measure_arena",
    "allocates",
    "window_parity",
    "streaming_parity",
    "check_window_model",
    "check_streaming_model",
    "record_in_bundle",
    "tflm_record",
    "add_arena_budget",
    "require_parity",
    "MIN_ARGMAX_AGREEMENT",
]

#: the PyPI distribution that provides the interpreter
PACKAGE = "tflite-micro"
#: largest arena tried before the bisection gives up
MAX_ARENA_BYTES = 64 * 1024 * 1024
#: smallest arena ever given to the interpreter: this build crashes (SIGSEGV, not an error) on arenas too
#: small for its own allocator objects (a 256 B arena does; 512 B fails cleanly)
MIN_ARENA_BYTES = 1024
#: kws-convert refuses a model whose TFLM argmax agrees with LiteRT's on fewer rows than this: the two
#: interpreters share TFLite's reference int8 arithmetic, so disagreement beyond a stray near-tie row
#: (the issue saw 144/145 on the streaming model, up to 16 int8 steps apart) means the firmware would
#: not behave as the bundle was evaluated
MIN_ARGMAX_AGREEMENT = 0.98
_INSTALL_HINT = "pip install tflite-micro (it is in kws-edge's 'train' extra: pip install 'kws-edge[train]')"


def import_tflm() -> Any:
    """The ``tflite_micro.runtime`` module, or a one-line error that says how to install it."""
    try:
        from tflite_micro import runtime
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the TFLite Micro interpreter is not installed ({exc}); {_INSTALL_HINT}, or check the "
            "profile without it by choosing a device whose runtime is not tflite-micro"
        ) from None
    return runtime


def tflm_build() -> TflmBuild:
    """The installed ``tflite-micro`` build (``tflite_micro.__version__`` ends in ``-g<git hash>``)."""
    import_tflm()
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import tflite_micro

    full = str(getattr(tflite_micro, "__version__", ""))
    try:
        dist_version = version(PACKAGE)
    except PackageNotFoundError:
        dist_version = full.split("-g")[0]
    match = re.search(r"-g([0-9a-f]{6,40})$", full)
    return TflmBuild(package=PACKAGE, version=dist_version, git_hash=match.group(1) if match else "",
                     platform=platform.machine() or "unknown")


class TflmInterpreter:
    """A model loaded in the TFLM interpreter with a given arena; int8 in, int8 out."""

    def __init__(self, model_bytes: bytes, arena_bytes: int) -> None:
        runtime = import_tflm()
        if arena_bytes < MIN_ARENA_BYTES:
            raise ConversionError(f"TFLite Micro cannot allocate the model in a {int(arena_bytes):,} B arena: "
                                  f"under {MIN_ARENA_BYTES:,} B not even the allocator fits (not tried: the "
                                  "interpreter crashes on such arenas)")
        self._content = bytes(model_bytes)
        with captured_native_stderr() as log:
            try:
                self._interp = runtime.Interpreter.from_bytes(self._content, arena_size=int(arena_bytes))
            except (RuntimeError, ValueError) as exc:
                error = exc
            else:
                error = None
        if error is not None:
            tail = " | ".join(line.strip() for line in "".join(log).splitlines() if line.strip())[-300:]
            raise ConversionError(f"TFLite Micro cannot allocate the model in a {int(arena_bytes):,} B arena: "
                                  f"{error}" + (f" [{tail}]" if tail else ""))
        self.inputs = self._details(self._interp.get_input_details)
        self.outputs = self._details(self._interp.get_output_details)

    @staticmethod
    def _details(get: Any) -> list[dict[str, Any]]:
        found = []
        with captured_native_stderr():  # an index past the end prints "Input index N out of range" and raises
            while True:
                try:
                    found.append(get(len(found)))
                except (RuntimeError, ValueError, IndexError):
                    break
        return found

    def run_raw(self, *inputs: np.ndarray) -> list[np.ndarray]:
        if len(inputs) != len(self.inputs):
            raise ValueError(f"the model takes {len(self.inputs)} inputs, got {len(inputs)}")
        for k, (detail, x) in enumerate(zip(self.inputs, inputs)):
            self._interp.set_input(np.ascontiguousarray(np.reshape(x, detail["shape"]), detail["dtype"]), k)
        self._interp.invoke()
        return [np.array(self._interp.get_output(k)) for k in range(len(self.outputs))]

    def arena_used_bytes(self) -> int:
        """The RecordingMicroAllocator's "arena allocation total" (0 when it cannot be read)."""
        with captured_native_stderr() as log:
            self._interp.print_allocations()
        match = re.search(r"Arena allocation total (\d+) bytes", "".join(log))
        return int(match.group(1)) if match else 0


def _try(model_bytes: bytes, arena_bytes: int) -> bool:
    try:
        TflmInterpreter(model_bytes, arena_bytes)
    except ConversionError:
        return False
    return True


_CHILD = (
    "import sys\n"
    "from kws_edge.converters.tflm import _try\n"
    "sys.exit(0 if _try(open(sys.argv[1], 'rb').read(), int(sys.argv[2])) else 3)\n"
)


def allocates(model_bytes: bytes, arena_bytes: int, *, fresh_process: bool = True) -> bool:
    """Whether TFLM allocates the model's tensors in ``arena_bytes``; by default in a fresh process."""
    if not fresh_process:
        return _try(model_bytes, arena_bytes)
    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(model_bytes)
        f.flush()
        proc = subprocess.run([sys.executable, "-c", _CHILD, f.name, str(int(arena_bytes))],
                              capture_output=True, text=True, timeout=120)
    if proc.returncode < 0:  # killed by a signal: TFLM crashed allocating, so the model does not fit
        return False
    if proc.returncode not in (0, 3):
        raise ConversionError(f"the TFLite Micro trial process failed (exit {proc.returncode}): "
                              f"{proc.stderr.strip().splitlines()[-1:] or ''}")
    return proc.returncode == 0


def _bisect(model_bytes: bytes, lo: int, hi: int, *, fresh: bool) -> tuple[int, int]:
    """Smallest size in (lo, hi] that allocates, given that lo does not and hi does; and the trials taken."""
    n = 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        n += 1
        if allocates(model_bytes, mid, fresh_process=fresh):
            hi = mid
        else:
            lo = mid
    return hi, n


def _upper_bound(model_bytes: bytes, *, fresh: bool) -> tuple[int, int]:
    """An arena that allocates (doubling from 64 KiB), and the trials taken."""
    hi, n = max(64 * 1024, 4 * len(model_bytes)), 0
    while True:
        n += 1
        if allocates(model_bytes, hi, fresh_process=fresh):
            return hi, n
        if hi >= MAX_ARENA_BYTES:
            raise ConversionError(f"TFLite Micro cannot allocate the model even in a {hi:,} B arena; the model "
                                  "uses an operator or type TFLM does not support")
        hi = min(hi * 2, MAX_ARENA_BYTES)


def _search_here(model_bytes: bytes) -> dict[str, int]:
    """The whole arena search in this process; :func:`measure_arena` runs it in a child process."""
    hi, trials = _upper_bound(model_bytes, fresh=False)
    probe = TflmInterpreter(model_bytes, hi)
    used = probe.arena_used_bytes()
    probe.run_raw(*(np.zeros(d["shape"], d["dtype"]) for d in probe.inputs))
    del probe
    # The used total is close to the answer but no bound (a few bytes less can allocate when the arena's end
    # falls on an alignment boundary): start just under it and widen while that still allocates. Arenas far
    # too small can crash the interpreter, so the search stays near the used total.
    step = 64
    lo = max(MIN_ARENA_BYTES - 1, used - step)
    while lo >= MIN_ARENA_BYTES and allocates(model_bytes, lo, fresh_process=False):
        trials += 1
        step *= 4
        lo = max(MIN_ARENA_BYTES - 1, used - step)
    found, n = _bisect(model_bytes, lo, hi, fresh=False)  # every trial above lo, near or over the used total
    return {"arena_bytes": found, "arena_used_bytes": used, "upper_bytes": hi, "trials": trials + n + 1}


_SEARCH_CHILD = (
    "import json, sys\n"
    "from kws_edge.converters.tflm import _search_here\n"
    "print(json.dumps(_search_here(open(sys.argv[1], 'rb').read())))\n"
)


def measure_arena(model_bytes: bytes, *, confirm: bool = True) -> ArenaRecord:
    """Smallest TFLM tensor arena for ``model_bytes``, by bisection of the arena size (1-byte resolution).

    The search runs in one child process (an arena far too small can crash
    the interpreter instead of failing): an upper end doubling from 64 KiB,
    then a bisection from just under the allocator's used total. With
    ``confirm`` the boundary is re-tried in two more fresh processes: the
    found size must allocate and one byte less must not. If the child crashes
    or a fresh process disagrees, the bisection is redone with every trial in
    its own process (slow: about a second per trial).
    """
    import_tflm()
    if len(model_bytes) < 8 or bytes(model_bytes[4:8]) != b"TFL3":
        raise ConversionError("not a TFLite model (the flatbuffer identifier TFL3 is missing); nothing to measure")
    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(model_bytes)
        f.flush()
        proc = subprocess.run([sys.executable, "-c", _SEARCH_CHILD, f.name], capture_output=True, text=True,
                              timeout=600)
    if proc.returncode > 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ConversionError(last.split("Error: ", 1)[-1] if "ConversionError" in last else
                              f"the TFLite Micro arena search failed: {last}")
    method = "bisection of the arena size in a child process"
    if proc.returncode == 0:
        found_json = json.loads(proc.stdout.strip().splitlines()[-1])
        found, used, hi = found_json["arena_bytes"], found_json["arena_used_bytes"], found_json["upper_bytes"]
        trials = found_json["trials"]
        good = True
        if confirm:
            trials += 2
            good = allocates(model_bytes, found) and not allocates(model_bytes, found - 1)
            method += ", boundary confirmed in fresh processes"
    else:  # the child crashed
        used, good, trials = 0, False, 0
        hi, n = _upper_bound(model_bytes, fresh=True)
        trials += n
    if not good:
        found, n = _bisect(model_bytes, MIN_ARENA_BYTES - 1, hi, fresh=True)
        trials += n
        method = "bisection of the arena size, every trial in a fresh process"
    return ArenaRecord(arena_bytes=int(found), arena_used_bytes=int(used), method=method, trials=int(trials))


def _num(v: float) -> float | int:
    return int(v) if float(v).is_integer() else round(float(v), 6)


def _reference_engine(model_bytes: bytes) -> Any:
    from kws_edge.engine import Engine

    try:
        return Engine(model_bytes, kernels="builtin")
    except BackendUnavailableError:
        return Engine(model_bytes)


def _compare(tflm_rows: list[np.ndarray], ref_rows: list[np.ndarray]) -> tuple[int, float, float, str]:
    """Rows compared, argmax agreement, largest difference and its unit."""
    integer = np.issubdtype(np.asarray(ref_rows[0]).dtype, np.integer)
    cast = np.int32 if integer else np.float64
    a = np.concatenate([np.reshape(r, (-1, r.shape[-1])) for r in tflm_rows]).astype(cast)
    b = np.concatenate([np.reshape(r, (-1, r.shape[-1])) for r in ref_rows]).astype(cast)
    diff = float(np.max(np.abs(a - b)))
    return (len(a), float(np.mean(a.argmax(axis=1) == b.argmax(axis=1))), diff,
            f"{np.asarray(ref_rows[0]).dtype.name} steps" if integer else "(float output)")


def window_parity(model_bytes: bytes, features: np.ndarray, *, arena_bytes: int,
                  inputs: str = "calibration clips") -> TflmParity:
    """Window model: TFLM vs LiteRT on each clip of ``features`` (normalised, (n, frames, cepstra))."""
    features = np.asarray(features, np.float32)
    if features.ndim != 3 or len(features) == 0:
        raise ConversionError(f"TFLM parity needs a non-empty (clips, frames, cepstra) array, got {features.shape}")
    ref = _reference_engine(model_bytes)
    tflm = TflmInterpreter(model_bytes, arena_bytes)
    if len(tflm.inputs) != 1 or len(tflm.outputs) != 1:
        raise ConversionError(f"a window model has one input and one output; TFLM sees {len(tflm.inputs)} "
                              f"and {len(tflm.outputs)}")
    ours, theirs = [], []
    for clip in features:
        q = ref.quantize(clip.reshape(ref.input.shape), ref.input)
        theirs.append(ref.run_raw(q)[0])
        ours.append(tflm.run_raw(q)[0])
    n, agree, diff, unit = _compare(ours, theirs)
    return TflmParity(inputs=f"{len(features)} {inputs}", n_compared=n, argmax_agreement=round(agree, 6),
                      max_difference=_num(diff), difference_unit=unit, reference=f"{ref.backend} ({ref.kernels} kernels)")


def _stream_roles(shapes_in: Sequence[Sequence[int]], shapes_out: Sequence[Sequence[int]]) -> tuple[int, int, int, int]:
    """Indices (frames in, state in, probabilities out, state out): the runtime's contract (kws_edge.streaming)."""
    return tensor_roles(shapes_in, shapes_out, error=ConversionError)


def streaming_parity(model_bytes: bytes, streams: Sequence[np.ndarray], *, arena_bytes: int,
                     inputs: str = "pseudo-streams of calibration clips") -> TflmParity:
    """Streaming model closed-loop: TFLM and LiteRT each feed back their own state over each stream.

    ``streams`` are normalised ``(frames, cepstra)`` feature sequences; every
    call takes ``block + context`` frames and advances ``block`` frames, from
    the zero state (the state input's zero point), as the runtime does.
    """
    ref = _reference_engine(model_bytes)
    tflm = TflmInterpreter(model_bytes, arena_bytes)
    fr, si, po, so = _stream_roles([t.shape for t in ref.inputs], [t.shape for t in ref.outputs])
    tfr, tsi, tpo, tso = _stream_roles([list(d["shape"]) for d in tflm.inputs],
                                       [list(d["shape"]) for d in tflm.outputs])
    frames_info, state_info = ref.inputs[fr], ref.inputs[si]
    window = int(frames_info.shape[1])
    block = int(ref.outputs[po].shape[1])
    ours, theirs, n_calls = [], [], 0
    for stream in streams:
        stream = np.asarray(stream, np.float32)
        zero = np.full(state_info.shape, state_info.zero_point if state_info.quantized else 0,
                       np.dtype(state_info.dtype))
        s_ref, s_tflm = zero.copy(), zero.copy()
        for start in range(0, len(stream) - window + 1, block):
            q = ref.quantize(stream[start:start + window].reshape(frames_info.shape), frames_info)
            ref_in = [q, s_ref] if fr == 0 else [s_ref, q]
            out_ref = ref.run_raw(*ref_in)
            tflm_in = [None, None]
            tflm_in[tfr], tflm_in[tsi] = q, s_tflm
            out_tflm = tflm.run_raw(*tflm_in)
            theirs.append(out_ref[po])
            ours.append(out_tflm[tpo])
            s_ref = out_ref[so].reshape(state_info.shape)
            s_tflm = out_tflm[tso].reshape(state_info.shape)
            n_calls += 1
    if not n_calls:
        raise ConversionError("the parity streams are shorter than one streaming window")
    n, agree, diff, unit = _compare(ours, theirs)
    total_frames = sum(len(s) for s in streams)
    return TflmParity(inputs=f"{len(streams)} {inputs} ({total_frames} frames, {n_calls} calls, closed-loop state)",
                      n_compared=n, argmax_agreement=round(agree, 6), max_difference=_num(diff), difference_unit=unit,
                      reference=f"{ref.backend} ({ref.kernels} kernels)")


@dataclass(frozen=True)
class TflmCheck:
    """One model measured in TFLM: its arena, its parity with LiteRT, and which build measured it."""

    file: str
    arena: ArenaRecord
    parity: TflmParity
    build: TflmBuild
    seconds: float

    def record(self) -> TflmModelRecord:
        """What a manifest keeps of this check (``budgets.tflm.models[file]``; no timing, so measuring the
        same model again writes the same figures)."""
        return TflmModelRecord(arena_bytes=self.arena.arena_bytes, arena=self.arena, parity=self.parity)

    def summary(self) -> str:
        return (f"TFLM {self.file}: arena {self.arena.arena_bytes:,} B (allocator reports "
                f"{self.arena.arena_used_bytes:,} B used); parity vs {self.parity.reference}: {self.parity.summary()}")


def _check(model_bytes: bytes, file: str, parity: Callable[[int], TflmParity]) -> TflmCheck:
    start = time.perf_counter()
    build = tflm_build()
    arena = measure_arena(model_bytes)
    result = parity(arena.arena_bytes)
    return TflmCheck(file=file, arena=arena, parity=result, build=build, seconds=time.perf_counter() - start)


def check_window_model(model_bytes: bytes, features: np.ndarray, *, file: str = "model.tflite",
                       inputs: str = "calibration clips") -> TflmCheck:
    """Measure a window model's arena in TFLM and compare its outputs with LiteRT on ``features``."""
    return _check(model_bytes, file, lambda arena: window_parity(model_bytes, features, arena_bytes=arena,
                                                                 inputs=inputs))


def check_streaming_model(model_bytes: bytes, streams: Sequence[np.ndarray], *,
                          file: str = "model_streaming.tflite",
                          inputs: str = "pseudo-streams of calibration clips") -> TflmCheck:
    """Measure a streaming model's arena in TFLM and compare it closed-loop with LiteRT over ``streams``."""
    return _check(model_bytes, file, lambda arena: streaming_parity(model_bytes, streams, arena_bytes=arena,
                                                                    inputs=inputs))


def require_parity(check: TflmCheck, minimum: float = MIN_ARGMAX_AGREEMENT) -> None:
    """Raise ``ConversionError`` (nothing written) when TFLM and LiteRT disagree on too many rows."""
    if check.parity.argmax_agreement < minimum:
        raise ConversionError(
            f"TFLite Micro and {check.parity.reference} disagree on {check.file}: {check.parity.summary()} on "
            f"{check.parity.inputs}, below the {100 * minimum:g}% the firmware needs; nothing written. Check the "
            f"model's operators and the {check.build.package} version"
        )


def tflm_record(previous: Optional[TflmRecord], check: TflmCheck) -> TflmRecord:
    """``budgets.tflm`` with ``check`` added (one build; per-model figures by file name)."""
    models = dict(previous.models) if previous is not None else {}
    models[check.file] = check.record()
    return TflmRecord(build=check.build, models=models)


def add_arena_budget(budgets: Budgets, profile: Any, check: TflmCheck, *, streaming: bool) -> Budgets:
    """A manifest's ``budgets`` with ``check``'s arena budget (replacing an older one) and its TFLM record."""
    from kws_edge.budgets import arena_result

    row = arena_result(profile, check.arena.arena_bytes, build=check.build.describe(), streaming=streaming)
    results = tuple(r for r in budgets.results if r.name != row.name) + (row,)
    return dataclasses.replace(budgets, results=results, tflm=tflm_record(budgets.tflm, check))


#: seeded parity inputs of :func:`record_in_bundle` (a bundle carries no clips): windows and stream clips
RECORD_WINDOWS = 100
RECORD_STREAM_CLIPS = 60


def record_in_bundle(bundle_dir: str | Path, *, device: Any = None, out_dir: str | Path | None = None,
                     seed: int = 0) -> tuple[Path, tuple[TflmCheck, ...]]:
    """Measure an existing bundle's models in TFLM and record the figures in its manifest (atomically).

    Every model the bundle holds (``model.tflite`` and, when present, the
    streaming model) gets its arena and parity in ``budgets["tflm"]``; when
    the profile (``device``, default the one the bundle was checked against)
    runs TFLite Micro, its arena budgets are added to ``budgets["results"]``
    too. A bundle carries no clips, so parity runs on seeded N(0, 1)
    normalised features (the inputs say so). ``out_dir`` defaults to the
    bundle itself.
    """
    from kws_edge.bundle import MANIFEST_NAME, load_bundle, save_bundle
    from kws_edge.devices import load_profile

    bundle = load_bundle(bundle_dir)
    m = bundle.manifest
    budgets = m.budgets
    name = device or (budgets.profile.name if budgets.profile is not None else "") or budgets.device
    profile = load_profile(name) if name else None
    rng = np.random.default_rng(seed)
    frames, n_cepstra = m.features.frames_per_clip, m.features.n_cepstra
    windows = rng.standard_normal((RECORD_WINDOWS, frames, n_cepstra)).astype(np.float32)
    noise = f"seeded N(0, 1) normalised feature windows (seed {seed})"
    checks = [check_window_model(bundle.model_bytes, windows, file=m.model.file, inputs=noise)]
    if bundle.streaming_model_bytes is not None and m.streaming_model is not None:
        stream = rng.standard_normal((RECORD_STREAM_CLIPS * frames, n_cepstra)).astype(np.float32)
        checks.append(check_streaming_model(bundle.streaming_model_bytes, [stream], file=m.streaming_model.file,
                                            inputs=f"seeded N(0, 1) normalised feature stream (seed {seed})"))
    for check in checks:
        if profile is not None and profile.runtime == "tflite-micro":
            budgets = add_arena_budget(budgets, profile, check, streaming=check.file != m.model.file)
        else:
            budgets = dataclasses.replace(budgets, tflm=tflm_record(budgets.tflm, check))
    manifest = dataclasses.replace(m, budgets=budgets)
    keep = {m.model.file, MANIFEST_NAME} | ({m.streaming_model.file} if m.streaming_model else set())
    extra = {p.name: p.read_bytes() for p in Path(bundle_dir).iterdir() if p.is_file() and p.name not in keep}
    target = Path(out_dir) if out_dir is not None else Path(bundle_dir)
    save_bundle(target, manifest, bundle.model_bytes, streaming_model_bytes=bundle.streaming_model_bytes,
                extra_files=extra, overwrite=True)
    return target, tuple(checks)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """``python -m kws_edge.converters.tflm BUNDLE [--device D] [--out DIR]``: measure and record."""
    import click

    from kws_edge.cli import run_cli

    @click.command(name="python -m kws_edge.converters.tflm")
    @click.argument("bundle", type=click.Path(path_type=str))
    @click.option("--device", default=None, help="profile to check the arenas against (default: the bundle's)")
    @click.option("--out", "out_dir", default=None, type=click.Path(path_type=str),
                  help="write the measured bundle here instead of in place")
    @click.option("--seed", type=int, default=0, show_default=True, help="seed of the parity inputs")
    def command(bundle: str, device: Optional[str], out_dir: Optional[str], seed: int) -> None:
        """Measure a bundle's models in TFLite Micro and record the arenas in its manifest."""
        target, checks = record_in_bundle(bundle, device=device, out_dir=out_dir, seed=seed)
        for check in checks:
            click.echo(f"{check.summary()} [{check.seconds:.1f} s]")
        click.echo(f"recorded in {target / 'manifest.json'} (measured by {checks[0].build.describe()}, "
                   f"git {checks[0].build.git_hash or 'unknown'})")

    sys.exit(run_cli(command, list(argv) if argv is not None else None))


if __name__ == "__main__":
    main()
