"""The pipeline room: ``kws pipeline`` and ``kws evaluate``, on top of training, conversion and the runtime.

* :mod:`.stages`: data -> train -> convert -> budget -> evaluate -> benchmark -> bundle -> report
  (-> track), resumable; :mod:`.ledger` keeps the stage keys; :mod:`.config` the ``[pipeline]`` table;
* :mod:`.evaluate`: ``kws evaluate``, clip metrics and the one streaming evaluation of a bundle or a run;
* :mod:`.reproducibility`, :mod:`.report`, :mod:`.tracking`: ``--check-reproducible``, the report page,
  MLflow;
* :mod:`.cli`: the two commands, registered on ``kws`` through the ``kws_edge.commands`` entry points.

Imports point one way (docs/ARCHITECTURE.md): this room may import every room below it (runtime,
training, converters) and the workstation tools; none of them imports it. Importing it does not
import TensorFlow.
"""
