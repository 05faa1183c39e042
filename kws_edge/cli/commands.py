"""Imports every module that registers a ``kws`` subcommand on :data:`kws_edge.cli.cli`.

One module per area; each uses ``@cli.command()`` from ``kws_edge.cli``.
Modules whose dependencies are extras import them inside the command body,
so ``kws --help`` works on a runtime-only install.
"""

from . import runtime  # noqa: F401  detect, classify, info, listen
from . import serve  # noqa: F401  serve (live view in the browser; extra "serve")
from . import bench  # noqa: F401  bench (issue 5)
from . import evaluate  # noqa: F401  evaluate (training issue; needs the train extra)
from . import mlops  # noqa: F401  pipeline, registry, monitor (MLOps issue)
