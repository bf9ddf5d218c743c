"""Export a study's winner (or any trained trial) to the trainers: a JSON record, an ml-cvnets config and model
module, a timm ByobNet file, and an ONNX graph checked and timed with onnxruntime.

``export(study, formats, out)`` writes the files; each format is also available alone:

* ``json`` -- ``record(...)``: the config (what ``archsearch train --config FILE`` reads through
  ``load_exported_config``), its stage plan, params and MACs by fvcore and in closed form, the proxy score
  with its rung, fidelity, seed, trained resolution and the network's scores over every seed at that rung,
  how it was found (study, strategy, rungs, data, archsearch version), where the study decided, and the
  winner's margin over each of the three baselines with its 95 % interval and its words (``decision``). An
  ONNX export adds an ``onnx`` section (file, opset, max abs diff, latency). ``latency``
  carries the measured latency (``latency_ms``) with the backend, batch, threads and device it was measured on:
  the trial's own, where the study measured one, else the ONNX export's.
* ``cvnets`` -- ``export_cvnets``: ImageNet training YAML with the reference recipe, a model module that
  registers the exact architecture in ml-cvnets' model registry, and a README (see ``export_cvnets``).
* ``timm`` -- ``export_timm``: a Python file that builds the architecture as a timm ``ByobNet``.
* ``onnx`` -- ``export_onnx``: ``torch.onnx.export`` with the TorchScript exporter (``dynamo=False``) at opset
  ``ONNX_OPSET``; the graph holds freshly initialised weights (seeded): it is for deployment checks and
  latency, not for predictions. Outputs are compared with PyTorch's and latency is measured with onnxruntime.

The exported trial is the study's winner by default: the first trial of the network ``decision`` names
(``results.judge.study_facts``, the one decision the summary and the dashboard also show), never re-chosen here.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna

from .. import __version__
from ..model.config import ArchConfig, ConfigError
from ..model.cost import count
from ..results.decision import Decision
from ..results.judge import StudyFacts, study_facts
from ..search.jobs import Ledger
from ..search.settings import StudySettings
from ..search.study import study_dir
from ..train.weights import load as load_weights
from . import ExportError
from .cvnets import export_cvnets
from .onnx import LATENCY_RUNS, LATENCY_WARMUP, ONNX_OPSET, export_onnx
from .timm import export_timm

FORMATS = ("json", "cvnets", "timm", "onnx", "weights", "onnx-int8")
RECORD_FORMAT = "archsearch-export"
RECORD_VERSION = 2  # 2: rungs -- the trained resolution, rung and seeds, the decision's three baselines


@dataclass(frozen=True)
class ExportSource:
    """The trial to export and the study's decision it is part of."""

    study: str
    storage: str
    settings: StudySettings
    trial: dict[str, Any]  # jobs.Entry.to_dict() of the exported trial, with its params and cache flag
    network: dict[str, Any]  # networks.Network.to_dict(): the trial's network at its rung, over every seed
    decision: Decision
    quantized: dict[str, Any] | None = None  # its quantized outcome, where 'run --quantize' made one

    @property
    def winner_trial(self) -> int | None:
        """The winner's first trial at the deciding rung (the one exported by default)."""
        return self.decision.winner.trials[0] if self.decision.winner else None

    @property
    def config(self) -> ArchConfig:
        return ArchConfig.from_dict(self.trial["config"])

    @property
    def weights(self) -> Path | None:
        """The trial's trained weights, where the study kept them (deciding-rung networks) and they still are."""
        found = self.trial.get("weights")
        return Path(found) if found and Path(found).is_file() else None

    @property
    def slug(self) -> str:
        """File-name and identifier stem: ``<study>_trial<N>``, lower case, [a-z0-9_] only."""
        return re.sub(r"[^a-z0-9_]+", "_", f"{self.study}_trial{self.trial['trial']}".lower()).strip("_")


def select_trial(study: optuna.Study, storage_url: str = "", trial: int | None = None,
                 facts: StudyFacts | None = None) -> ExportSource:
    """The winner of ``study_facts(...).decision`` (its first trial), or trained trial number ``trial`` (any
    rung); ``ExportError`` otherwise (a wrong ``trial`` before the study is modelled)."""
    numbers = sorted(e.number for e in Ledger(study.get_trials(deepcopy=False)).entries if e.state == "done")
    if trial is not None and trial not in numbers:
        listed = ", ".join(map(str, numbers[:20])) + (", ..." if len(numbers) > 20 else "")
        raise ExportError(f"--trial: study {study.study_name!r} has no trained trial {trial} "
                          f"(trained: {listed or 'none'})")
    facts = facts or study_facts(study, storage_url)
    decision = facts.decision
    if trial is None:
        if decision.winner is None:
            raise ExportError(
                f"study {study.study_name!r} has no winner yet: no search network was trained at its deciding "
                f"rung, {decision.fidelity!r} ({len(numbers)} jobs trained); run 'archsearch run' first or name one "
                "with --trial")
        trial = decision.winner.trials[0]
    entry = next(e for e in facts.ledger.entries if e.number == trial)
    winner = decision.winner
    if winner is not None and trial in winner.trials:
        network = winner  # with the GP's posterior mean
    else:
        rung = entry.job.rung
        network = facts.ledger.network(entry.job.config, rung, facts.plan.ladder.rungs[rung].name)
    trial_dict = {**entry.to_dict(), "params": entry.params, "cached": entry.cached}
    return ExportSource(facts.study, facts.storage, facts.settings, trial_dict, network.to_dict(), decision,
                        facts.quantized.get(trial))


# ---- json ------------------------------------------------------------------------------------------
def record(source: ExportSource) -> dict[str, Any]:
    """The JSON record: architecture, cost, its score at its rung, how it was found, and the winner's margins
    over the baselines (``decision``)."""
    config = source.config
    traced, closed = count(config, "fvcore"), count(config, "closed_form")
    t, d, ladder = source.trial, source.decision, source.settings.fidelity_ladder()
    return {
        "format": RECORD_FORMAT,
        "format_version": RECORD_VERSION,
        "config": config.to_dict(),
        "config_id": config.id,
        "stages": [asdict(s) for s in config.stages()],
        "head_channels": config.head_channels(),
        "cost": {
            "params": traced.params,
            "macs": traced.macs,
            "params_fvcore": traced.params,
            "macs_fvcore": traced.macs,
            "params_closed_form": closed.params,
            "macs_closed_form": closed.macs,
            "resolution": config.resolution,
            "batch": 1,
        },
        "proxy": {
            "accuracy": t["accuracy"],
            "top5": t["top5"],
            "rung": t["rung"],
            "fidelity": t["fidelity"],
            "seed": t["seed"],
            "trained_resolution": t["trained_resolution"],
            "data": t["data"],
            "wall_s": t["wall_s"],
            "cached": t["cached"],
            "network": source.network,  # every seed of this network at this rung, and their mean
        },
        "found": {
            "study": source.study,
            "storage": source.storage,
            "trial": t["trial"],
            "role": t["role"],
            "baseline_kinds": t["baseline_kinds"],
            "is_winner": t["trial"] == source.winner_trial,
            "winner_trial": source.winner_trial,
            "strategy": source.settings.strategy,
            "rungs": ladder.name,
            "promote": ladder.promote,
            "top_seeds": ladder.top_seeds,
            "data": source.settings.data,
            "seed": source.settings.seed,
            "mac_budget": source.settings.mac_budget,
            "within_budget": t["macs"] <= source.settings.mac_budget,
            "archsearch_version": __version__,
            "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
        "decided_at": {**d.where(), "noise": d.noise.to_dict()},
        "baselines": [m.to_dict() for m in d.margins],  # the winner's margins, whichever trial is exported
        # the latency measured for the trial on the study's backend, where the study recorded one; else the
        # ONNX export's (``export`` fills it in), else None
        "latency": t.get("latency") if isinstance(t.get("latency"), dict) else None,
    }


def write_json(doc: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return path


def load_exported_config(path: str | Path) -> ArchConfig:
    """The architecture in an export record, a ``studies/NAME/winner.json``, a ``summary.json`` (its
    winner) or a bare config JSON (``ArchConfig.to_json``). Every failure is a one-line ``ConfigError``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path}: cannot read ({err.__class__.__name__})") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"config file {path}: not JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a JSON object")
    if isinstance(data.get("family"), str):  # a bare config (a summary's "family" is a family study's section)
        found = data
    elif isinstance(data.get("config"), dict):
        found = data["config"]
    elif isinstance(data.get("winner"), dict) and isinstance(data["winner"].get("config"), dict):
        found = data["winner"]["config"]
    else:
        raise ConfigError(f"config file {path}: no architecture config in it (expected an archsearch export, "
                          "a winner.json, a summary.json with a winner, or a config with a 'family')")
    try:
        return ArchConfig.from_dict(found)
    except TypeError as err:  # e.g. a field of the wrong kind that dataclasses rejects before validation
        raise ConfigError(f"config file {path}: {err}") from None
    except ConfigError as err:
        raise ConfigError(f"config file {path}: {err}") from None


# ---- everything ------------------------------------------------------------------------------------
def default_out(study: str) -> Path:
    return study_dir(study) / "export"


def export(source: ExportSource, formats: list[str] | tuple[str, ...], out: Path | None = None, *,
           opset: int = ONNX_OPSET, runs: int = LATENCY_RUNS, warmup: int = LATENCY_WARMUP,
           threads: int | None = None) -> dict[str, list[Path]]:
    """Write each of ``formats`` (``FORMATS`` or "all") for ``source`` into ``out``; paths per format.

    The JSON record is written whenever ``json`` or ``onnx`` is asked for (the ONNX check and latency go
    into it). An ONNX section already in ``out``'s record for the same config survives a json-only export.
    ``weights`` copies the trial's trained weights (an error for a trial without them; "all" ships them where
    there are some); the ONNX graph holds them where there are.
    """
    wanted = list(FORMATS) if "all" in formats else list(dict.fromkeys(formats))
    int8 = source.quantized.get("model") if source.quantized else None
    if "all" in formats:
        wanted = [f for f in wanted if (f != "weights" or source.weights) and (f != "onnx-int8" or int8)]
    if "onnx-int8" in wanted and not (int8 and Path(int8).is_file()):
        raise ExportError(f"--format onnx-int8: trial {source.trial['trial']} has no int8 model (run the study "
                          "again with --quantize int8; only the deciding rung's networks are quantized)")
    if "weights" in wanted and source.weights is None:
        raise ExportError(f"--format weights: trial {source.trial['trial']} has no kept weights (a study keeps "
                          "those of its deciding rung's networks, trained since archsearch kept weights)")
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown:
        raise ExportError(f"--format: unknown {', '.join(unknown)}; choose from {', '.join(FORMATS)}, all")
    out = Path(out) if out is not None else default_out(source.study)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ExportError(f"--out: cannot create {out}: {err.strerror or err}") from None
    if not out.is_dir():
        raise ExportError(f"--out: {out} is not a folder")
    config = source.config
    written: dict[str, list[Path]] = {}
    json_path = out / f"{source.slug}.json"
    doc = None
    if "json" in wanted or "onnx" in wanted:
        doc = record(source)
    if "onnx" in wanted:
        onnx_path = out / f"{source.slug}.onnx"
        trained = load_weights(source.weights) if source.weights is not None else None
        doc["onnx"] = export_onnx(config, onnx_path, opset=opset, runs=runs, warmup=warmup, threads=threads,
                                  trained=trained)
        written["onnx"] = [onnx_path]
    elif doc is not None:
        doc["onnx"] = _previous_onnx(json_path, out, config)
    if doc is not None:
        if doc["latency"] is None and isinstance(doc["onnx"], dict):
            doc["latency"] = doc["onnx"].get("latency")
        written["json"] = [write_json(doc, json_path)]
    if "cvnets" in wanted:
        cost = doc["cost"] if doc else None
        written["cvnets"] = export_cvnets(source, out / "cvnets", cost=cost)
    if "timm" in wanted:
        params = doc["cost"]["params"] if doc else None
        written["timm"] = [export_timm(source, out, params=params)]
    if "weights" in wanted:
        written["weights"] = [Path(shutil.copyfile(source.weights, out / f"{source.slug}.pt"))]
    if "onnx-int8" in wanted:
        written["onnx-int8"] = [Path(shutil.copyfile(int8, out / f"{source.slug}-int8.onnx"))]
    return written


def _previous_onnx(json_path: Path, out: Path, config: ArchConfig) -> dict[str, Any] | None:
    try:
        old = json.loads(json_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    section = old.get("onnx") if isinstance(old, dict) else None
    if (isinstance(section, dict) and old.get("config_id") == config.id
            and (out / str(section.get("file", ""))).is_file()):
        return section
    return None
