"""What one proxy training returns (``EvalRecord``), its per-epoch report, and the per-image hits it keeps.

Importable without torch: the study's readers (decision, summary, export) decode records and hits.
"""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class EpochStats:
    """What ``on_epoch`` receives after every epoch (e.g. to report to an Optuna trial, or as a heartbeat)."""

    epoch: int  # 1-based
    epochs: int
    train_loss: float  # mean over the epoch
    images_seen: int  # so far
    wall_s: float  # since training began
    images_per_s: float


@dataclass(frozen=True)
class EvalRecord:
    """The outcome of one proxy training; ``status`` is "ok" or "failed" (then ``reason`` says why)."""

    config_id: str
    config: dict[str, Any]
    status: str
    reason: str | None
    top1: float | None  # validation accuracy, 0..1
    top5: float | None
    train_loss: float | None  # mean label-smoothed loss of the last epoch
    epochs: int  # completed
    images_seen: int
    wall_s: float  # data, training and evaluation
    train_images_per_s: float
    device: str
    fidelity: dict[str, Any]  # the profile's name and every field
    seed: int
    resolution: int  # the side actually trained and evaluated at
    dataset: str
    train_images: int
    val_images: int
    skipped_images: int  # unreadable files left out of either split
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)  # per epoch, with ``curve``
    val_correct: str | None = None  # which validation images were right (top-1): ``encode_hits``, for paired tests
    resumed_from_epoch: int = 0  # epochs read from a checkpoint, not trained by this call
    # torch's intra-op threads in each epoch: on a CPU they set the order of floating-point sums, so the same
    # seed trained with another count is a different (equally valid) draw of the score
    torch_threads: list[int] = dataclasses.field(default_factory=list)
    # slices each batch was trained in to fit in memory (``loop.accumulate_gradients``): the same effective
    # batch, but BatchNorm sees a slice, so another count is another network: a result's key keeps it
    micro_batches: int = 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def encode_hits(hits: np.ndarray) -> str:
    """Per-image top-1 hits (bool, in the split's order) as compact text: base64 of the packed bits."""
    return base64.b64encode(np.packbits(np.asarray(hits, dtype=bool)).tobytes()).decode("ascii")


def decode_hits(text: str, n: int) -> np.ndarray:
    """Inverse of ``encode_hits`` for a split of ``n`` images."""
    return np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8))[:n].astype(bool)
