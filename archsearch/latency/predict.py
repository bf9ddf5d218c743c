"""Latency predictors for every grid point of a space, fitted on a latency table.

Five kinds, all fitted on measured networks of one table (one space, backend, batch and thread count):

* ``lut`` -- Once-for-All: the sum of the blocks' lookup-table latencies plus one fixed overhead (the median of
  measured minus summed over the fitted networks).
* ``features`` -- latency as a non-negative combination of the network's work by block kind and op class
  (``blocks.network_features``: dense, depthwise and attention MACs, elements written, normalised elements,
  block counts) plus a constant, fitted to minimise the squared *relative* error (non-negative least squares):
  each term is a cost per unit of work, which the hardware can only add to.
* ``gp`` -- a Gaussian process (Matern 5/2, ARD) on the encoded factors (``FactorSpace.encode``), in log-latency.
* ``lut+gp``, ``features+gp`` -- the first model times a GP correction fitted to its log residuals over the
  encoded factors: the physical model carries the structure, the GP what it misses (cache effects, kernels
  that change with shape).

``evaluate.select_model`` measures each on held-out networks and keeps the best; ``save_model`` / ``load_model``
store it as JSON beside its table (a GP is stored as its data and hyperparameters, refitted on load with them
fixed, which reproduces its predictions exactly). Predictions are for the table's class count: a config with
another one is priced with the table's classifier.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..model.config import ArchConfig, ConfigError
from ..model.space import FactorSpace
from .backends import LatencyError
from .blocks import feature_names, network_blocks, network_features
from .table import default_table_path, model_path

KINDS = ("lut", "lut+gp", "features", "features+gp", "gp")
FORMAT = "archsearch-latency-model"
FORMAT_VERSION = 1
GP_RESTARTS = 2


# ---- components --------------------------------------------------------------------------------------
def feature_matrix(configs: Sequence[ArchConfig], names: Sequence[str]) -> np.ndarray:
    rows = [network_features(c) for c in configs]
    return np.array([[row[n] for n in names] for row in rows], dtype=np.float64).reshape(len(rows), len(names))


@dataclass(frozen=True)
class FeatureTerms:
    """``latency_ms = intercept + sum(coef * feature / scale)`` over the kept features."""

    names: tuple[str, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float

    @classmethod
    def fit(cls, configs: Sequence[ArchConfig], y_ms: np.ndarray) -> FeatureTerms:
        # local: scipy loads only to fit (light commands import the latency package)
        from scipy.optimize import nnls

        full = feature_matrix(configs, feature_names())
        keep = [j for j in range(full.shape[1]) if np.ptp(full[:, j]) > 0]  # constant columns: the intercept's
        x = full[:, keep]
        scale = np.abs(x).max(axis=0)
        design = np.hstack([x / scale, np.ones((len(y_ms), 1))]) / y_ms[:, None]  # rows scaled: relative error
        solution, _ = nnls(design, np.ones(len(y_ms)), maxiter=100 * design.shape[1])
        names = feature_names()
        return cls(tuple(names[j] for j in keep), tuple(map(float, scale)), tuple(map(float, solution[:-1])),
                   float(solution[-1]))

    def predict_ms(self, configs: Sequence[ArchConfig]) -> np.ndarray:
        x = feature_matrix(configs, self.names)
        return self.intercept + (x / np.asarray(self.scale)) @ np.asarray(self.coef)


@dataclass(frozen=True)
class LookupTable:
    """``latency_ms = overhead + sum of the blocks' measured latencies``."""

    entries: dict[str, float] = field(repr=False)
    overhead_ms: float = 0.0

    def block_sum(self, configs: Sequence[ArchConfig]) -> np.ndarray:
        sums = []
        for config in configs:
            try:
                sums.append(sum(self.entries[b.key] for b in network_blocks(config)))
            except KeyError as err:
                raise LatencyError(f"latency model: block {err.args[0]} of {config.id} is not in the lookup table; "
                                   "measure it with 'archsearch latency-table' over a space holding it") from None
        return np.asarray(sums, dtype=np.float64)

    @classmethod
    def fit(cls, entries: dict[str, float], configs: Sequence[ArchConfig], y_ms: np.ndarray) -> LookupTable:
        base = cls(entries)
        return cls(entries, float(np.median(y_ms - base.block_sum(configs))))

    def predict_ms(self, configs: Sequence[ArchConfig]) -> np.ndarray:
        return self.block_sum(configs) + self.overhead_ms


def _gp_kernel(dims: int):
    # local: scikit-learn loads only for a GP term (light commands import the latency package)
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    return (ConstantKernel(1.0, (1e-3, 1e3)) * Matern(np.ones(dims), (1e-2, 1e2), nu=2.5)
            + WhiteKernel(1e-3, (1e-8, 1e0)))


@dataclass(frozen=True)
class GPTerm:
    """A GP regression of ``target`` (log latency, or a log ratio) on encoded configs."""

    x: tuple[tuple[float, ...], ...] = field(repr=False)
    y: tuple[float, ...] = field(repr=False)
    theta: tuple[float, ...]

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, seed: int = 0) -> GPTerm:
        # local: scikit-learn loads only for a GP term (light commands import the latency package)
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor

        with warnings.catch_warnings():  # a length scale at its bound: that factor is (ir)relevant, as intended
            warnings.simplefilter("ignore", ConvergenceWarning)
            gp = GaussianProcessRegressor(_gp_kernel(x.shape[1]), normalize_y=True,
                                          n_restarts_optimizer=GP_RESTARTS, random_state=seed).fit(x, y)
        return cls(tuple(map(tuple, x.tolist())), tuple(y.tolist()), tuple(gp.kernel_.theta.tolist()))

    @cached_property
    def _regressor(self):
        """The fitted GP: its hyperparameters fixed, refitted on its data (what loading does, bit for bit)."""
        # local: scikit-learn loads only for a GP term (light commands import the latency package)
        from sklearn.gaussian_process import GaussianProcessRegressor

        x = np.asarray(self.x, dtype=np.float64)
        kernel = _gp_kernel(x.shape[1]).clone_with_theta(np.asarray(self.theta))
        return GaussianProcessRegressor(kernel, normalize_y=True, optimizer=None).fit(x, np.asarray(self.y))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._regressor.predict(x)


# ---- the model ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LatencyModel:
    """A fitted latency predictor for the grid of one space, on one backend, batch and thread count."""

    kind: str
    space: FactorSpace
    space_dict: dict = field(repr=False)
    settings: dict = field(repr=False)  # backend, batch, threads, device, runtime, num_classes, table
    features: FeatureTerms | None = None
    lut: LookupTable | None = field(default=None, repr=False)
    gp: GPTerm | None = field(default=None, repr=False)
    evaluation: dict = field(default_factory=dict, repr=False)

    @property
    def backend(self) -> str:
        return self.settings["backend"]

    @property
    def batch(self) -> int:
        return int(self.settings["batch"])

    @property
    def threads(self) -> int:
        return int(self.settings["threads"])

    def describe(self) -> str:
        s = self.settings
        return (f"{self.kind} latency model of {self.space.family} on {s['backend']} (batch {s['batch']}, "
                f"{s['threads']} thread{'s' if s['threads'] != 1 else ''}, {s['device']})")

    def _as_table(self, configs: Sequence[ArchConfig]) -> list[ArchConfig]:
        out = []
        for config in configs:
            if config.family != self.space.family:
                raise LatencyError(f"latency model: {config.id} is {config.family}; this model is of "
                                   f"{self.space.family} (fit one with 'archsearch latency-table --family "
                                   f"{config.family}')")
            out.append(config if config.num_classes == self.space.num_classes
                       else config.replace(num_classes=self.space.num_classes))
        return out

    def predict_ms(self, configs: Sequence[ArchConfig]) -> np.ndarray:
        """Predicted latency of each config, in milliseconds."""
        configs = self._as_table(configs)
        if not configs:
            return np.zeros(0)
        if self.kind == "gp":
            return np.exp(self.gp.predict(self.space.encode(configs)))
        base = (self.lut if self.kind.startswith("lut") else self.features).predict_ms(configs)
        if self.gp is not None:
            base = np.maximum(base, 1e-6) * np.exp(self.gp.predict(self.space.encode(configs)))
        return base

    def predict_seconds(self, configs: Sequence[ArchConfig]) -> np.ndarray:
        """Predicted latency of each config, in seconds (the unit of ``budget.parse_latency``)."""
        return self.predict_ms(configs) / 1e3

    # ---- JSON ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "kind": self.kind, "space": self.space_dict,
            "settings": self.settings, "evaluation": self.evaluation,
            "features": None if self.features is None else {
                "names": list(self.features.names), "scale": list(self.features.scale),
                "coef": list(self.features.coef), "intercept": self.features.intercept},
            "lut": None if self.lut is None else {"overhead_ms": self.lut.overhead_ms, "entries": self.lut.entries},
            "gp": None if self.gp is None else {"theta": list(self.gp.theta), "x": [list(r) for r in self.gp.x],
                                                "y": list(self.gp.y)},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyModel:
        if data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
            raise LatencyError(f"latency model: not an {FORMAT} v{FORMAT_VERSION} file")
        space = FactorSpace.from_dict(data["space"]).with_num_classes(int(data["settings"]["num_classes"]))
        f, lut, gp = data.get("features"), data.get("lut"), data.get("gp")
        return cls(
            data["kind"], space, data["space"], data["settings"],
            FeatureTerms(tuple(f["names"]), tuple(f["scale"]), tuple(f["coef"]), f["intercept"]) if f else None,
            LookupTable(dict(lut["entries"]), lut["overhead_ms"]) if lut else None,
            GPTerm(tuple(map(tuple, gp["x"])), tuple(gp["y"]), tuple(gp["theta"])) if gp else None,
            data.get("evaluation", {}),
        )


def fit_model(kind: str, space: FactorSpace, space_dict: dict, settings: dict, configs: Sequence[ArchConfig],
              y_ms: Sequence[float], lut_entries: dict[str, float] | None = None, seed: int = 0) -> LatencyModel:
    """Fit a predictor of ``kind`` to the measured latencies ``y_ms`` of ``configs``."""
    if kind not in KINDS:
        raise LatencyError(f"latency model: unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    if len(configs) < 3:
        raise LatencyError(f"latency model: {len(configs)} measured networks are too few to fit one (need 3)")
    y = np.asarray(y_ms, dtype=np.float64)
    features = lut = gp = None
    if kind.startswith("lut"):
        if not lut_entries:
            raise LatencyError("latency model: the lut kinds need the table's lookup table (measure it without "
                               "--no-lut)")
        lut = LookupTable.fit(lut_entries, configs, y)
        base = lut.predict_ms(configs)
    elif kind.startswith("features"):
        features = FeatureTerms.fit(configs, y)
        base = features.predict_ms(configs)
    else:
        base = np.ones_like(y)
    if kind.endswith("gp"):
        gp = GPTerm.fit(space.encode(configs), np.log(y) - np.log(np.maximum(base, 1e-6)), seed)
    return LatencyModel(kind, space, space_dict, settings, features, lut, gp)


def save_model(model: LatencyModel, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(model.to_dict(), indent=1, sort_keys=True) + "\n")
    return path


def load_model(path: str | Path) -> LatencyModel:
    """A latency model saved by ``archsearch latency-table`` (``TABLE_model.json``); one-line errors."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LatencyError(f"latency model: no such file {path}") from None
    except (OSError, json.JSONDecodeError) as err:
        raise LatencyError(f"latency model: cannot read {path} ({err.__class__.__name__})") from None
    try:
        return LatencyModel.from_dict(data)
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise LatencyError(f"latency model: {path} is malformed ({err.__class__.__name__}: {err})") from None


def find_model(family: str, backend: str, batch: int = 1, threads: int = 1) -> LatencyModel:
    """The model ``archsearch latency-table`` keeps for these settings under ``benchmarks/`` of the current
    directory (the repository's committed ones from its root); one-line error naming the command if none."""
    path = model_path(default_table_path(family, backend, batch, threads))
    if not path.is_file():
        raise LatencyError(f"--latency-backend: no latency model of {family} on {backend} (batch {batch}, {threads} "
                           f"thread{'s' if threads != 1 else ''}) at {path}; measure one with 'archsearch "
                           f"latency-table --family {family} --backend {backend} --batch {batch} --threads {threads}'")
    return load_model(path)


def ape(predicted: Sequence[float], measured: Sequence[float]) -> np.ndarray:
    """Absolute percentage errors."""
    p, m = np.asarray(predicted, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    return 100 * np.abs(p - m) / m


def error_summary(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float | int | None]:
    """Median and 90th-percentile absolute percentage error, and Kendall's tau against the measurements."""
    # local: scipy loads only to score a predictor (light commands import the latency package)
    from scipy.stats import kendalltau

    errors = ape(predicted, measured)
    tau = kendalltau(predicted, measured).statistic if len(errors) >= 2 else math.nan
    return {"n": int(len(errors)), "median_ape": float(np.median(errors)), "p90_ape": float(np.percentile(errors, 90)),
            "max_ape": float(errors.max()), "kendall_tau": None if math.isnan(tau) else float(tau)}
