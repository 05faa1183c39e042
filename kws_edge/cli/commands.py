"""Imports every runtime module that registers a ``kws`` subcommand on :data:`kws_edge.cli.cli`.

One module per area; each uses ``@cli.command()`` from ``kws_edge.cli``. Commands of the rooms
above the runtime come through the ``kws_edge.commands`` entry points (:class:`kws_edge.cli.KwsGroup`).
"""

from . import runtime  # noqa: F401  detect, classify, info, listen
from . import bench  # noqa: F401  bench (issue 5)
