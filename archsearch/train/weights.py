"""A trained network's final weights, kept with what is needed to use them again: the architecture, the side
it was trained and scored at, the class list (its order is the classifier's) and where its data came from.

Quantization, export and a later evaluation read the network from this file alone; a checkpoint (``checkpoint``)
is for resuming a run and also holds the optimiser, the schedule and the RNGs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..model.config import ArchConfig, ConfigError
from ..model.generator import build_model

FORMAT = "archsearch-weights/1"


@dataclass(frozen=True)
class Weights:
    config: ArchConfig  # with the dataset's class count
    resolution: int  # the side trained and scored at
    classes: tuple[str, ...]
    state: dict[str, torch.Tensor]
    meta: dict[str, Any]  # profile, seed, data root, top-1 of the run that wrote them

    def model(self) -> nn.Module:
        """The trained network, in eval mode, on the CPU."""
        model = build_model(self.config)
        model.load_state_dict(self.state)
        return model.eval()


def save(path: str | Path, model: nn.Module, config: ArchConfig, resolution: int, classes: tuple[str, ...],
         meta: dict[str, Any]) -> Path:
    """Write the weights atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    blob = {"format": FORMAT, "config": config.to_dict(), "resolution": resolution, "classes": list(classes),
            "state": state, "meta": meta}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(blob, tmp)
    tmp.replace(path)
    return path


def load(path: str | Path) -> Weights:
    """Read weights written by ``save``; a missing or foreign file is a ``ConfigError`` (one line)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"weights: {path} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 -- any unreadable file is the same bad input
        raise ConfigError(f"weights: {path} is not a readable weights file ({type(err).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ConfigError(f"weights: {path} is not an archsearch weights file (written by 'archsearch train --save' "
                          "or kept by 'archsearch run')")
    return Weights(ArchConfig.from_dict(blob["config"]), int(blob["resolution"]), tuple(blob["classes"]),
                   blob["state"], dict(blob["meta"]))
