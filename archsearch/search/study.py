"""Studies: Optuna storage, the settings a study carries, trial records and the trial-result cache.

A study stores its own settings (space, budget, fidelity ladder, data, strategy, seed) as user attributes,
so that a resumed run -- or a worker on another machine that knows only the study name and storage URL --
searches exactly the same problem. Each trial is one job (``search.jobs``): its config, rung, seed, MACs,
params, accuracy record and fidelity. Results are also cached on disk (``ResultCache``), keyed by everything
that changes one (``result_key``): the network actually trained and its trained resolution, the fidelity,
the seed, the data's content, the device and precision, the torch version and the code of the model,
data pipeline and training loop. A result is then never trained twice, across studies too, and a stale or
foreign one is never reused.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..model.config import ArchConfig, ConfigError
from ..model.space import FACTORS, FactorSpace

# Under the current directory (an installed package has no source tree to write into); $ARCHSEARCH_STUDIES moves it.
STUDIES_DIR = Path(os.environ.get("ARCHSEARCH_STUDIES") or "studies").absolute()
STRATEGIES = ("gp", "nsga3", "tpe", "random", "design")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class StudyError(ConfigError):
    """A study that cannot be opened or resumed as asked; the message says what to do."""


@dataclass(frozen=True)
class StudySettings:
    """Everything that defines a search problem; stored in the study itself."""

    space: dict  # the factor-space TOML, parsed (so remote workers need no file)
    mac_budget: int
    ladder: dict  # fidelity.Ladder.to_dict(): the rungs' profiles, the promoted fraction, the top seeds
    data: str
    strategy: str
    seed: int
    trials: int  # distinct networks the strategy proposes at the first rung
    latency: dict | None = None  # latency.LatencyLimit.to_settings(), or None: no latency budget

    def factor_space(self) -> FactorSpace:
        return FactorSpace.from_dict(self.space)

    def fidelity_ladder(self):  # -> fidelity.Ladder (imported late: fidelity imports training, i.e. torch)
        from .fidelity import Ladder

        return Ladder.from_dict(self.ladder)

    def latency_limit(self):  # -> latency.LatencyLimit | None (imported late: the model needs numpy/sklearn)
        return self._latency_limit

    @cached_property
    def _latency_limit(self):
        """Read once per settings object: the loop checks every proposal against it."""
        if self.latency is None or self.latency.get("budget_s") is None:
            return None
        from ..latency.budget import LatencyLimit

        return LatencyLimit.from_settings(self.latency)

    @property
    def profile(self) -> str:
        """The ladder in one word: its rungs' profile names, cheapest first (``smoke>short``)."""
        return ">".join(r["name"] for r in self.ladder["rungs"])

    @classmethod
    def from_study(cls, study: optuna.Study) -> StudySettings:
        try:
            stored = dict(study.user_attrs["settings"])
        except KeyError:
            raise StudyError(f"study {study.study_name!r} was not created by archsearch run") from None
        if "ladder" not in stored:
            raise StudyError(f"study {study.study_name!r} was made by an older archsearch (one profile, no rungs); "
                             "start a new study (another --study name)")
        return cls(**stored)

    def mismatches(self, other: StudySettings) -> list[str]:
        """Settings that differ (the trial count may change on resume: it is how far to go)."""
        return [k for k in ("space", "mac_budget", "ladder", "data", "strategy", "seed", "latency")
                if json.dumps(getattr(self, k), sort_keys=True) != json.dumps(getattr(other, k), sort_keys=True)]


# ---- storage -----------------------------------------------------------------------------------------
def default_storage() -> str:
    return f"sqlite:///{STUDIES_DIR / 'archsearch.db'}"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite:")


def make_storage(url: str | None) -> optuna.storages.BaseStorage:
    """An RDB storage (SQLite or PostgreSQL). Liveness is archsearch's own heartbeat (``search.heartbeat``),
    which works on every storage."""
    url = url or default_storage()
    if is_sqlite(url):
        Path(url.split("///", 1)[-1]).parent.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as err:  # SQLAlchemy raises many kinds: bad URL, unreachable server, missing driver
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StudyError(f"--storage: cannot open {redact(url)}: {reason}") from None


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def data_tag(data: str | Path) -> str:
    """A short readable tag of a dataset root: its folder name and a hash of its resolved path, so that two
    folders both named ``train`` differ and the same folder, however spelled, gives the same tag."""
    path = Path(data).expanduser().resolve()
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.name).strip("._-")[:40] or "data"
    return f"{name}-{hashlib.sha256(str(path).encode()).hexdigest()[:6]}"


def default_study_name(family: str, mac_budget: int, strategy: str, profile: str, seed: int,
                       data: str | Path, latency: str | None = None) -> str:
    """The study ``archsearch run`` opens without ``--study``: one per search problem, the dataset included
    (a study refuses to resume with other settings, so a name without it would block a run on other data);
    a latency budget adds e.g. ``-4ms-ort-cpu`` after the MAC budget."""
    lat = f"-{latency}" if latency else ""
    return check_name(f"{family}-{mac_budget / 1e6:g}M{lat}-{strategy}-{profile}-s{seed}-{data_tag(data)}")


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise StudyError(f"--study: {name!r} is not a valid name (letters, digits, '_', '.', '-')")
    return name


def directions(strategy: str) -> list[str]:
    return ["maximize", "minimize"] if strategy == "nsga3" else ["maximize"]


def open_study(name: str, storage: optuna.storages.BaseStorage, settings: StudySettings | None,
               sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    """Create the study, or resume it; resuming with different settings is an error that names them."""
    check_name(name)
    exists = name in {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if not exists:
        if settings is None:
            raise StudyError(f"--study: no study named {name!r} in this storage")
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                    directions=directions(settings.strategy))
        study.set_user_attr("settings", asdict(settings))
        return study
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    stored = StudySettings.from_study(study)
    if settings is not None:
        differing = stored.mismatches(settings)
        if differing:
            details = ", ".join(f"{k}: stored {getattr(stored, k)!r}" for k in differing if k != "space")
            details += ", space differs" if "space" in differing else ""
            raise StudyError(f"study {name!r} exists with other settings ({details}); "
                             f"use another --study name or the same settings")
    return study


@contextmanager
def exclusive_run(name: str, storage_url: str) -> Iterator[None]:
    """One process per study on SQLite: SQLite has no heartbeat-safe concurrency across processes here."""
    if not is_sqlite(storage_url):
        yield
        return
    lock_path = study_dir(name) / "run.lock"
    with open(lock_path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StudyError(
                f"study {name!r} is already being run by another process on this SQLite storage; SQLite "
                "takes one process per study: use --storage postgresql://... for several workers"
            ) from None
        handle.write(str(os.getpid()))
        handle.flush()
        yield


def study_dir(name: str) -> Path:
    path = STUDIES_DIR / name
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---- trials <-> configs --------------------------------------------------------------------------------
def distributions(space: FactorSpace) -> dict[str, optuna.distributions.BaseDistribution]:
    """The factors as Optuna sees them: stepped floats (ordered, so TPE and NSGA-III can use the order)."""
    dists: dict[str, optuna.distributions.BaseDistribution] = {}
    for r in space.ranges:
        if r.name == "resolution":
            dists[r.name] = optuna.distributions.IntDistribution(int(r.min), int(r.max), step=int(r.step))
        else:
            dists[r.name] = optuna.distributions.FloatDistribution(r.min, r.max, step=r.step)
    if len(space.variants) > 1:
        dists["variant"] = optuna.distributions.CategoricalDistribution(list(space.variants))
    return dists


def config_params(config: ArchConfig, space: FactorSpace) -> dict[str, Any]:
    params: dict[str, Any] = {name: getattr(config, name) for name in FACTORS}
    if len(space.variants) > 1:
        params["variant"] = config.variant
    return params


def config_from_params(params: dict[str, Any], space: FactorSpace) -> ArchConfig:
    return space.config(params, params.get("variant"))


def trained_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Completed trials with a real accuracy (every rung and role)."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if "accuracy" in t.user_attrs]


# ---- the result cache ----------------------------------------------------------------------------------
def result_key(config: ArchConfig, trained_resolution: int, fidelity: dict, seed: int, context: dict) -> str:
    """Everything that changes a result: the network built (not the factor values that name it) and the
    side it was trained at, the fidelity, the seed, and ``context`` (data content, device and precision,
    torch and code versions: ``search.TrainingEvaluator.context``)."""
    family, variant, resolution, classes, stages = config.network_key()
    network = [family, variant, resolution, classes, [asdict(s) for s in stages]]
    blob = json.dumps({"network": network, "trained_resolution": trained_resolution, "fidelity": fidelity,
                       "seed": seed, "context": context}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class ResultCache:
    """Accuracy records on disk, one JSON file per (config, fidelity, data, seed); written atomically."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else STUDIES_DIR / "cache" / "results"
        self.root.mkdir(parents=True, exist_ok=True)

    def get(self, key: str) -> dict | None:
        path = self.root / f"{key}.json"
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def put(self, key: str, record: dict) -> None:
        tmp = self.root / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(record, sort_keys=True))
        tmp.replace(self.root / f"{key}.json")
