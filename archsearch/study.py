"""Studies: Optuna storage, the settings a study carries, trial records and the trial-result cache.

A study stores its own settings (space, budget, profile, data, strategy, seed) as user attributes, so that a
resumed run -- or a worker on another machine that knows only the study name and storage URL -- searches
exactly the same problem. Each trial stores its config, MACs, params, accuracy record and fidelity.
Results are also cached on disk by (trained config, fidelity, data, seed): the same trial is never trained
twice, across studies too.
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
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from .config import ArchConfig, ConfigError
from .space import FACTORS, FactorSpace

# Under the current directory (an installed package has no source tree to write into); $ARCHSEARCH_STUDIES moves it.
STUDIES_DIR = Path(os.environ.get("ARCHSEARCH_STUDIES") or "studies").absolute()
STRATEGIES = ("gp", "nsga3", "tpe", "random")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class StudyError(ConfigError):
    """A study that cannot be opened or resumed as asked; the message says what to do."""


@dataclass(frozen=True)
class StudySettings:
    """Everything that defines a search problem; stored in the study itself."""

    space: dict  # the factor-space TOML, parsed (so remote workers need no file)
    mac_budget: int
    profile: str
    data: str
    strategy: str
    seed: int
    trials: int

    def factor_space(self) -> FactorSpace:
        return FactorSpace.from_dict(self.space)

    def to_attrs(self) -> dict[str, Any]:
        return {"settings": asdict(self)}

    @classmethod
    def from_study(cls, study: optuna.Study) -> StudySettings:
        try:
            return cls(**study.user_attrs["settings"])
        except KeyError:
            raise StudyError(f"study {study.study_name!r} was not created by archsearch run") from None

    def mismatches(self, other: StudySettings) -> list[str]:
        """Settings that differ (the trial count may change on resume: it is how far to go)."""
        return [k for k in ("space", "mac_budget", "profile", "data", "strategy", "seed")
                if getattr(self, k) != getattr(other, k)]


# ---- storage -----------------------------------------------------------------------------------------
def default_storage() -> str:
    return f"sqlite:///{STUDIES_DIR / 'archsearch.db'}"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite:")


def heartbeat_interval() -> int:
    """Seconds between a running trial's heartbeats ($ARCHSEARCH_HEARTBEAT_S, default 30); a trial is
    declared dead after three missed beats."""
    value = os.environ.get("ARCHSEARCH_HEARTBEAT_S", "30")
    if not value.isdigit() or int(value) < 1:
        raise StudyError(f"ARCHSEARCH_HEARTBEAT_S: {value!r} is not a positive whole number of seconds")
    return int(value)


def make_storage(url: str | None) -> optuna.storages.BaseStorage:
    """An RDB storage with heartbeats, so a trial whose worker died is failed and re-queued."""
    url = url or default_storage()
    interval = heartbeat_interval()
    if is_sqlite(url):
        Path(url.split("///", 1)[-1]).parent.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.storages.RDBStorage(
            url,
            heartbeat_interval=interval,
            grace_period=3 * interval,
            heartbeat_stale_trial_callback=_retry_drawn_trial,
        )
    except Exception as err:  # SQLAlchemy raises many kinds: bad URL, unreachable server, missing driver
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StudyError(f"--storage: cannot open {redact(url)}: {reason}") from None


def drawn_params(trial: FrozenTrial) -> dict[str, Any]:
    """The config an unfinished trial had drawn: its params, or, for one stopped inside ``ask`` before they
    were written, the ``fixed_params`` it was queued with; empty when a fresh trial had drawn nothing yet."""
    return trial.params or trial.system_attrs.get("fixed_params") or {}


def _retry_drawn_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Heartbeat callback: queue a dead worker's trial again, unless it died before its config was drawn
    (Optuna's retry copies the system attrs, so a queued trial's ``fixed_params`` come along)."""
    if drawn_params(trial):
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2)(study, trial)


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
                       data: str | Path) -> str:
    """The study ``archsearch run`` opens without ``--study``: one per search problem, the dataset included
    (a study refuses to resume with other settings, so a name without it would block a run on other data)."""
    return check_name(f"{family}-{mac_budget / 1e6:g}M-{strategy}-{profile}-s{seed}-{data_tag(data)}")


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
    """Completed trials with a real accuracy (the baseline included, infeasible ones excluded)."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if "accuracy" in t.user_attrs]


def search_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Trained trials that the strategy proposed (not the baseline)."""
    return [t for t in trained_trials(study) if t.user_attrs.get("role") != "baseline"]


def trial_network(trial: FrozenTrial) -> tuple:
    return ArchConfig.from_dict(trial.user_attrs["config"]).network_key()


def networks_done(study: optuna.Study) -> int:
    """Distinct networks the strategy has had trained or seen fail (diverge): what --trials counts.
    A re-proposal of a network already done costs nothing (the cache answers) and does not count."""
    done = {trial_network(t) for t in search_trials(study)}
    done |= {trial_network(t) for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
             if t.user_attrs.get("failure") and t.user_attrs.get("role") != "baseline"}
    return len(done)


# ---- the result cache ----------------------------------------------------------------------------------
def result_key(config: ArchConfig, fidelity: dict, data_fingerprint: str, seed: int) -> str:
    """Keyed by the network built (not the factor values that name it), fidelity, data and seed."""
    family, variant, resolution, classes, stages = config.network_key()
    network = [family, variant, resolution, classes, [asdict(s) for s in stages]]
    blob = json.dumps({"network": network, "fidelity": fidelity, "data": data_fingerprint, "seed": seed},
                      sort_keys=True)
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
