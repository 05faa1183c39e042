"""kws_edge.portable: what a manifest or run file may say about a path."""

from __future__ import annotations

import pytest

from kws_edge.portable import absolute_paths_in, is_absolute_path, portable_json, portable_path


@pytest.mark.parametrize("path, written", [
    ("/work/scratch_s6/ship/run", "run"),
    ("/work/main/devices/cortex-m7-tflm.toml", "cortex-m7-tflm.toml"),
    ("C:\\Users\\me\\runs\\exp1", "exp1"),
    ("../shared/data/speech_commands_subset", "../shared/data/speech_commands_subset"),  # relative: as given
    ("runs/demo", "runs/demo"),
    ("synthetic", "synthetic"),
])
def test_portable_path(path, written):
    assert portable_path(path) == written
    assert is_absolute_path(path) == (written != path)


def test_portable_json_touches_only_absolute_path_strings():
    value = {"run_dir": "/a/b/run", "seed": 4, "note": "1/256 steps", "teachers": [{"path": "/x/t1"}, "rel/t2"],
             "git_commit": "abc+dirty"}
    assert absolute_paths_in(value) == ["/a/b/run", "/x/t1"]
    assert portable_json(value) == {"run_dir": "run", "seed": 4, "note": "1/256 steps",
                                    "teachers": [{"path": "t1"}, "rel/t2"], "git_commit": "abc+dirty"}
    assert absolute_paths_in(portable_json(value)) == []
