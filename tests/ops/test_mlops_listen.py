"""``kws listen --metrics-port --telemetry`` on the PulseAudio virtual microphone (``virtual_mic`` in conftest)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from support import tone_bundle as tones
from support.processes import kws_subprocess_env, write_pcm16
from kws_edge.workstation.monitor import read_snapshots


@pytest.mark.mic
def test_listen_serves_metrics_and_writes_snapshots(virtual_mic, tone_bundle_path, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    audio = tones.stream([("yes", 0.5)], 2.0, np.random.default_rng(0))
    wav = write_pcm16(tmp_path / "yes_stream.wav", audio)
    jsonl = tmp_path / "telemetry.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from kws_edge.cli import main; main()", "listen", "--bundle", str(tone_bundle_path),
         "--seconds", "4", "--json", "--metrics-port", "0", "--telemetry", str(jsonl), "--telemetry-interval", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=kws_subprocess_env())
    first = proc.stderr.readline()
    m = re.search(r"metrics on (http://127\.0\.0\.1:\d+/metrics)", first)
    assert m, first + proc.stderr.read()
    assert proc.stderr.readline().startswith("listening on")
    subprocess.run(["paplay", f"--device={virtual_mic}", str(wav)], timeout=20, check=True)
    with urllib.request.urlopen(m.group(1), timeout=10) as resp:
        text = resp.read().decode()
    values = {s.name + json.dumps(s.labels, sort_keys=True): s.value
              for fam in text_string_to_metric_families(text) for s in fam.samples}
    assert values['kws_hops_total{}'] > 50
    assert values['kws_detections_total{"label": "yes"}'] == 1
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert [json.loads(line)["label"] for line in out.splitlines()] == ["yes"]
    got = read_snapshots(jsonl)
    assert not got.truncated_tail and not got.bad_lines
    assert len(got.snapshots) >= 3  # one per second, plus the final one
    last = got.snapshots[-1]
    assert last["samples"] == 4 * 16000 and last["detections"]["yes"] == 1
    assert last["input"]["peak"] > 0.3 and last["overflows"] == 0
