"""The real-data bar (issue 3): the default recipe on the shared Speech Commands subset.

Run it with::

    pytest -m "realdata and slow" tests/test_training_realdata.py -s

It trains ``kws-train``'s default recipe on ``../shared/data/speech_commands_subset`` (relative
to the repository) and requires, on the speaker-disjoint validation split: 4-class accuracy
>= 95%, yes and no recall >= 95%, keyword false-accept rate <= 3%. Set
``KWS_EDGE_REALDATA_RUN_DIR`` to keep the run directory. Nothing derived from the data is
written into the repository.

Measured (training/RESULTS_DEFAULT_RECIPE.md): the defaults (DS-CNN 64 x 4, 8 epochs, 5 augmented
copies, noise p = 0.8 at 0-30 dB SNR, and since this bar was met ``average_last_epochs = 5``: the
weights averaged over every step of the last 5 epochs, BatchNorm statistics re-estimated) give, at the
default seed 1234, accuracy 96.9 %, yes 96.5 %, no 97.2 %, keyword FA 2.98 % (10 of 336: the bar
allows 10, so there is no clip of margin on the FA); a run takes 215-280 s in CI and took up to 371 s on
this 2-core machine with another engineer's training beside it (the averaging adds a few seconds). Mean of seeds 1234, 1, 2: accuracy 96.9 %, yes 97.1 %,
no 95.3 %, FA 2.4 % (every criterion met; seeds 1 and 2 alone miss the "no" recall with 94.3 %,
and seeds 3 and 4, run after the choice, miss the FA with 3.57 % and 3.87 %: the margin is one to three
clips either way, and only the default seed passes on its own; the five-seed mean passes, FA 2.92 %).
Without the averaging (the earlier defaults) seed 1234 gave FA 3.57 % and the mean no recall 94.0 %.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "speech_commands_subset"


@pytest.mark.realdata
@pytest.mark.slow
def test_default_recipe_meets_the_real_data_bar(tmp_path):
    if not REAL_DATA.is_dir():
        pytest.skip(f"{REAL_DATA} is not present")
    pytest.importorskip("tensorflow")
    from kws_edge.training.config import load_config
    from kws_edge.training.fit import train

    out = Path(os.environ.get("KWS_EDGE_REALDATA_RUN_DIR") or tmp_path / "run")
    config = load_config(None, data=str(REAL_DATA))
    start = time.perf_counter()
    run = train(config, out, overwrite=True)
    wall_s = time.perf_counter() - start
    m = run.metrics()["validation"]
    summary = {"wall_s": round(wall_s, 1), "accuracy": m["accuracy"], "recall": m["recall"],
               "keyword_false_accept_rate": m["keyword_false_accept_rate"], "n_clips": m["n_clips"],
               "run_dir": str(out)}
    print("\nreal-data bar:", json.dumps(summary))
    assert m["accuracy"] >= 0.95, summary
    assert m["recall"]["yes"] >= 0.95 and m["recall"]["no"] >= 0.95, summary
    assert m["keyword_false_accept_rate"] <= 0.03, summary
