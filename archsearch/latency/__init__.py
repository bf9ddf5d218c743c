"""Inference latency (issue 15): measure it, model it over a space, budget it, plot it.

MACs do not predict latency (separable attention, depthwise convs and memory-bound ops cost more time per
MAC than dense convs), so a search that promises milliseconds must measure and model them:

* ``backends`` / ``measure`` -- the timing harness: ``measure_latency(config, backend, batch, threads, runs,
  warmup)`` on ONNX Runtime (``ort-cpu``), eager PyTorch (``torch-cpu``) or a GPU (``torch-cuda``, bf16).
* ``blocks`` -- a network as blocks (stem, MV2 blocks, attention shells and layers, head): lookup-table keys
  and op-class features.
* ``table`` -- ``archsearch latency-table``'s resumable tables: sampled networks and the block lookup table.
* ``predict`` / ``evaluate`` -- the predictors (lookup table, feature regression, GP, and combinations), their
  held-out errors, the one kept, saved as JSON beside its table (``load_model``).
* ``budget`` -- ``parse_latency``, the configs within a latency (and MAC) budget, the check of a measurement,
  and a study's latency options (``LatencySettings``).
* ``figures`` -- latency against MACs, and the accuracy-latency Pareto front beside the accuracy-MACs one.
"""

from .backends import BACKENDS, DEFAULT_BACKEND, LatencyError, check_backend
from .budget import (
    LatencyBudgetError,
    LatencyCheck,
    LatencyLimit,
    LatencySettings,
    check_latency,
    format_seconds,
    parse_latency,
)
from .measure import LatencyRecord, measure_configs, measure_latency
from .predict import LatencyModel, find_model, load_model

__all__ = [
    "BACKENDS", "DEFAULT_BACKEND", "LatencyBudgetError", "LatencyCheck", "LatencyError", "LatencyLimit",
    "LatencyModel", "LatencySettings", "LatencyRecord", "check_backend", "check_latency", "find_model",
    "format_seconds", "load_model", "measure_configs", "measure_latency", "parse_latency",
]
