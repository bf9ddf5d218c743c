"""Checkpoints of one training run, written atomically after every epoch, so that an interrupted
``archsearch train --out DIR`` -- or a search job, or a promoted network continuing its rung's schedule --
resumes where it stopped and ends exactly where an uninterrupted run would (model, optimiser, LR schedule,
the data-order generator and the global RNG are all restored)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..model.config import ConfigError

LAST = "last.pt"


def save(folder: Path, identity: dict, epoch: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
         schedule: Any, generator: torch.Generator, outcome: dict, history: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        "identity": identity, "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(), "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
        "outcome": {k: v for k, v in outcome.items() if k != "history"}, "history": list(history),
    }
    tmp = folder / f".{LAST}.{os.getpid()}.tmp"
    torch.save(state, tmp)
    tmp.replace(folder / LAST)
    return folder / LAST


def restore(folder: Path, identity: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
            schedule: Any, generator: torch.Generator, outcome: dict, last_epoch: int) -> tuple[int, list[dict]] | None:
    """Load the last checkpoint into the given objects; returns (first epoch to run, history so far), or None
    with nothing loaded when the checkpoint is past ``last_epoch`` (a longer run of the schedule holds it)."""
    path = folder / LAST
    if not path.exists():
        return 1, []
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state["epoch"] > last_epoch:
        return None
    if state["identity"] != identity:
        raise ConfigError(f"--out: {folder} holds a checkpoint of another run "
                          f"({json.dumps(state['identity']['config'], sort_keys=True)}); choose another --out")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    outcome.update(state["outcome"])
    return state["epoch"] + 1, state["history"]
