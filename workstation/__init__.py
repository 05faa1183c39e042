"""Workstation tools: what runs where bundles are made and watched, never on the device.

* :mod:`.registry`: the local model registry (``kws registry``), guarded by a ``filelock`` lock;
* :mod:`.monitor`: the offline half of telemetry, reading, summarising and plotting a JSONL history
  (``kws monitor``);
* :mod:`.gates`: the gate tables of the benchmark suite (``benchmarks/``);
* :mod:`.web`: the live view in the browser (``kws serve``);
* :mod:`.cli`: those commands, registered on ``kws`` through the ``kws_edge.commands`` entry points.

This package imports only the runtime (``kws_edge`` proper); the runtime never imports it. Its
dependencies come with the ``workstation`` extra, ``pip install "kws-edge[workstation]"``; a command
that lacks one says so in one line.
"""

#: how to install what this package needs
WORKSTATION_EXTRA = '"kws-edge[workstation]"'
