"""Studies: Optuna storage, study names, opening a study with its settings, and the trial-result cache.

A study stores its settings (``search.settings.StudySettings``) when it is created and refuses to resume with
others. Each trial is one job (``search.jobs``): its config, rung, seed, MACs, params, accuracy record and
profile. Results are also cached on disk (``ResultCache``), keyed by everything that changes one
(``result_key``): the network actually trained and its trained resolution, the profile, the seed, the data's
content, the device and precision, the torch version and the code of the model, data pipeline and training
loop. A result is then never trained twice, across studies too, and a stale or foreign one is never reused.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..model.config import ArchConfig
from .settings import StudyError, StudySettings

# Under the current directory (an installed package has no source tree to write into); $ARCHSEARCH_STUDIES moves it.
STUDIES_DIR = Path(os.environ.get("ARCHSEARCH_STUDIES") or "studies").absolute()
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def quiet_optuna() -> None:
    """For the commands that open studies: Optuna's INFO lines, its experimental-feature warnings and gpytorch's
    note on sparse tensors (internal to its index kernel) are noise there."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")


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


def default_study_name(family: str, mac_budget: int | tuple[int, ...], strategy: str, ladder_name: str, seed: int,
                       data: str | Path, latency: str | None = None) -> str:
    """The study ``archsearch run`` opens without ``--study``: one per search problem, the dataset included
    (a study refuses to resume with other settings, so a name without it would block a run on other data);
    ``ladder_name`` is the rungs' profile names joined by ``-``; latency options add e.g. ``-4ms-ort-cpu``
    (``LatencySettings.tag``) after the MAC budget; a family's budgets are joined by ``_`` (``75M_150M_300M``)."""
    lat = f"-{latency}" if latency else ""
    budgets = "_".join(f"{b / 1e6:g}M" for b in (mac_budget if isinstance(mac_budget, tuple) else (mac_budget,)))
    return check_name(f"{family}-{budgets}{lat}-{strategy}-{ladder_name}-s{seed}-{data_tag(data)}")


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise StudyError(f"--study: {name!r} is not a valid name (letters, digits, '_', '.', '-')")
    return name


def open_study(name: str, storage: optuna.storages.BaseStorage, settings: StudySettings | None,
               sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    """Create the study, or resume it; resuming with different settings is an error that names them."""
    check_name(name)
    exists = name in {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if not exists:
        if settings is None:
            raise StudyError(f"--study: no study named {name!r} in this storage")
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                    directions=settings.directions)
        study.set_user_attr("settings", settings.to_dict())
        return study
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    stored = StudySettings.from_study(study)
    if settings is not None:
        differing = stored.mismatches(settings)
        if differing:
            details = ", ".join(f"{k}: stored {stored.to_dict()[k]!r}" for k in differing if k != "space")
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


# ---- trials -------------------------------------------------------------------------------------------
def trained_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Completed trials with a real accuracy (every rung and role)."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if "accuracy" in t.user_attrs]


# ---- the result cache ----------------------------------------------------------------------------------
def result_key(config: ArchConfig, trained_resolution: int, profile: dict, seed: int, context: dict) -> str:
    """Everything that changes a result: the network built (not the factor values that name it) and the
    side it was trained at, the profile (its dict, or its schedule for a checkpoint; hashed under the key
    "fidelity", so cached results keep their names), the seed, and ``context`` (data content, device and
    precision, torch and code versions: ``search.TrainingEvaluator.context``)."""
    family, variant, resolution, classes, stages = config.network_key()
    network = [family, variant, resolution, classes, [asdict(s) for s in stages]]
    blob = json.dumps({"network": network, "trained_resolution": trained_resolution, "fidelity": profile,
                       "seed": seed, "context": context}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class ResultCache:
    """Accuracy records on disk, one JSON file per (config, profile, data, seed); written atomically."""

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
