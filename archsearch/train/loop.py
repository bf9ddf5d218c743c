"""Proxy training: score any architecture by a short, fixed training recipe on an ImageNet-format subset.

A search needs many accuracies that rank architectures the way full training would, at a cost it can pay.
``evaluate(config, profile)`` trains a fresh ``build_model(config)`` with one named fidelity ``Profile`` and
returns an ``EvalRecord``. The recipe follows ml-cvnets (AdamW without decay on norms and biases, linear
warm-up then cosine decay to a tenth of the peak LR, label smoothing 0.1, gradient clipping, random-resized
crop and flip) scaled down to each profile's budget. Training and evaluation run at the config's resolution
times the profile's ``resolution_scale``, rounded to the nearest pixel (the generated v1 and v2 models run at
every side from 8 px up), so two resolutions of a space never train as one network; the record keeps it.

On a CPU a run is bit-for-bit reproducible for a seed: initialisation, shuffling and augmentation draw from
seeded generators (the caller's global RNG state is left as it was). Both devices train channels_last; a
CPU run also keeps freed memory in the process (``tune_cpu_allocator``), and a CUDA run uses bf16 autocast,
pinned host memory and, where the profile asks for it, ``torch.compile``. A run whose loss
turns NaN or infinite stops and comes back as a ``"failed"`` record instead of raising.

A batch too big for the memory there is trains in ``micro_batches`` slices (``accumulate_gradients``; the
callers choose the count with ``memory.plan_micro_batches``): same effective batch, same augmentation, same
gradients on a network without BatchNorm. BatchNorm normalises each slice by its own statistics (and
updates its running statistics once per slice), so the count changes results: the record and the
checkpoint identity keep it, and so must a result's cache key.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..model.config import ArchConfig, ConfigError
from ..model.generator import build_model
from . import checkpoint
from . import weights as trained_weights
from .data import (
    Dataset,
    Split,
    iterate_batches,
    load_dataset,
    normalize,
    random_resized_crop,
)
from .recipe import Profile, get_profile, train_resolution
from .record import EpochStats, EvalRecord, encode_hits


class _Diverged(Exception):
    pass


_CODE_MODULES = ("model/config.py", "model/blocks.py", "model/generator.py", "train/data.py", "train/recipe.py",
                 "train/loop.py")  # not train/memory.py: how many micro-batches is the record's, not the code's


def code_version() -> str:
    """A hash of the code that decides a trained network's score (factor rule, generator, data pipeline,
    recipe, training loop): part of every result-cache key, so a change to any of them never reuses old results."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for name in _CODE_MODULES:
        digest.update((package / name).read_bytes())
    return digest.hexdigest()[:16]


def result_context(device: torch.device, data_fingerprint: str) -> dict[str, Any]:
    """What, besides the network, fidelity and seed, changes a result: data content, device and precision,
    torch and code versions."""
    precision = "bf16-autocast" if device.type == "cuda" else "fp32"
    return {"data": data_fingerprint, "device": device.type, "precision": precision,
            "torch": torch.__version__.split("+")[0], "code": code_version()}


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def tune_cpu_allocator() -> bool:
    """Keep freed tensor memory in the process (glibc): the biggest single speed-up of CPU training here.

    By default glibc returns every block above its mmap threshold to the kernel when it is freed, so each
    training step page-faults its large activations back in: on the 2-core VM this was measured on, that
    made elementwise ops (BatchNorm, SiLU) 5-7x slower and a whole step 2x slower. Process-wide and
    idempotent; returns False where there is no glibc ``mallopt``.
    """
    m_trim_threshold, m_mmap_threshold = -1, -3
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    # glibc before 2.35 refuses thresholds above 32 MiB: fall back to that
    mmap_ok = mallopt(m_mmap_threshold, 1 << 30) or mallopt(m_mmap_threshold, 32 << 20)
    return bool(mmap_ok and mallopt(m_trim_threshold, 2**31 - 1))


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on conv and linear weights only, not on norms and biases (ml-cvnets v2)."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def accumulate_gradients(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, micro_batches: int = 1, *,
                         label_smoothing: float = 0.0, autocast: Any = None) -> torch.Tensor:
    """Backpropagate the batch's mean loss in ``micro_batches`` slices into the gradients; returns that mean
    loss, detached.

    Each slice's loss is scaled by its share of the batch, so the summed gradients are the whole batch's,
    to rounding, on a network without BatchNorm; memory for activations falls with the slice. BatchNorm (in
    training mode) normalises each slice by its own statistics, so there the gradients, and the running
    statistics it updates once per slice, differ from one batch's. One slice is the plain backward pass.
    """
    autocast = autocast if autocast is not None else nullcontext()
    if micro_batches == 1:
        with autocast:
            loss = F.cross_entropy(_full_precision(model(inputs)), labels, label_smoothing=label_smoothing)
        loss.backward()
        return loss.detach()
    total = None
    for part, part_labels in zip(inputs.tensor_split(micro_batches), labels.tensor_split(micro_batches)):
        if not len(part_labels):
            continue
        with autocast:
            loss = F.cross_entropy(_full_precision(model(part)), part_labels, label_smoothing=label_smoothing)
        share = len(part_labels) / len(labels)
        (loss * share).backward()
        total = loss.detach() * share if total is None else total + loss.detach() * share
    return total


def _full_precision(logits: torch.Tensor) -> torch.Tensor:
    """bf16 logits (CUDA autocast) in float32 for the loss; float32 and float64 as they are."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def _to_device(images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    if device.type == "cuda":
        images, labels = images.pin_memory(), labels.pin_memory()
    return images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


@torch.inference_mode()
def accuracy(model: nn.Module, split: Split, batch_size: int, device: torch.device,
             hits_out: list[np.ndarray] | None = None) -> tuple[float, float]:
    """Top-1 and top-5 accuracy (top-k with k capped at the class count) of ``model`` on ``split``; with
    ``hits_out``, the per-image top-1 hits are appended to it (one bool array)."""
    model.eval()
    correct1 = correct5 = 0
    per_image = []
    autocast = torch.autocast("cuda", torch.bfloat16) if device.type == "cuda" else nullcontext()
    for images, labels in iterate_batches(split, batch_size):
        images, labels = _to_device(images, labels, device)
        with autocast:
            logits = model(normalize(images).contiguous(memory_format=torch.channels_last)).float()
        if not torch.isfinite(logits).all():
            raise _Diverged("non-finite logits at evaluation")
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top == labels[:, None]
        correct1 += int(hits[:, 0].sum())
        correct5 += int(hits.any(dim=1).sum())
        per_image.append(hits[:, 0].cpu().numpy())
    if hits_out is not None:
        hits_out.append(np.concatenate(per_image) if per_image else np.zeros(0, dtype=bool))
    return correct1 / len(split), correct5 / len(split)


def evaluate(config: ArchConfig, profile: str | Profile = "smoke", data: str | Path | None = None, seed: int = 0,
             progress: bool = True, *, classes: str | Path | None = None, device: str | torch.device | None = None,
             on_epoch: Callable[[EpochStats], None] | None = None, checkpoint_dir: str | Path | None = None,
             curve: bool = False, micro_batches: int = 1, weights: str | Path | None = None,
             **overrides: Any) -> EvalRecord:
    """Train ``config`` from scratch with ``profile`` (fields replaced by ``overrides``) and score it.

    ``data``/``classes`` go to ``load_dataset``; the config's ``num_classes`` is set to the dataset's.
    ``checkpoint_dir`` resumes from the checkpoint there (of the same network, schedule and seed, at most at
    the profile's last epoch) and checkpoints after every epoch: a profile stopped early (``stop_epoch``)
    leaves the checkpoint a longer profile of the same schedule continues from, ending exactly where an
    uninterrupted run of it would. ``curve`` also scores every epoch: the record's ``history``.
    ``micro_batches`` trains each batch in that many slices (``accumulate_gradients``) and scores in batches
    of twice a slice: what fits in less memory (``memory.plan_micro_batches`` chooses it).
    ``weights`` is a file to keep the trained network in (``weights.save``), written when the run is "ok".
    ``on_epoch`` is called after every epoch; an exception it raises (e.g. ``optuna.TrialPruned``) ends
    the run and propagates. Divergence (NaN/inf loss) and CUDA out-of-memory give a "failed" record.
    """
    start = time.perf_counter()
    prof = get_profile(profile, **overrides)
    if not 1 <= micro_batches <= prof.batch_size:
        raise ConfigError(f"micro_batches: {micro_batches!r} is not in 1..{prof.batch_size} (the batch size)")
    dev = torch.device(device) if device is not None else default_device()
    if dev.type == "cpu":
        tune_cpu_allocator()
    resolution = train_resolution(config, prof.resolution_scale)
    ds = load_dataset(data, resolution, classes=classes, train_per_class=prof.train_per_class,
                      val_per_class=prof.val_per_class, progress=progress)
    config = config.replace(num_classes=ds.num_classes)
    outcome: dict[str, Any] = {"status": "ok", "reason": None, "top1": None, "top5": None, "train_loss": None,
                               "epochs": 0, "images_seen": 0, "train_s": 0.0}
    rng_devices = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices):  # seeds init and dropout without touching the caller's RNG
        torch.manual_seed(seed)
        try:
            model = _train(config, prof, ds, dev, seed, progress, on_epoch, outcome,
                           Path(checkpoint_dir) if checkpoint_dir is not None else None, curve, micro_batches)
            if weights is not None:
                trained_weights.save(weights, model, config, resolution, ds.classes,
                                     {"profile": prof.name, "seed": seed, "data": str(ds.root),
                                      "top1": outcome["top1"], "micro_batches": micro_batches})
        except _Diverged as err:
            outcome.update(status="failed", reason=f"diverged: {err}", top1=None, top5=None, train_loss=None)
        except torch.cuda.OutOfMemoryError:
            outcome.update(status="failed", reason=f"out of memory at batch {prof.batch_size} in {micro_batches} "
                           "micro-batch(es)", top1=None, top5=None, train_loss=None)
    return EvalRecord(
        config_id=config.id, config=config.to_dict(), status=outcome["status"], reason=outcome["reason"],
        top1=outcome["top1"], top5=outcome["top5"], train_loss=outcome["train_loss"], epochs=outcome["epochs"],
        images_seen=outcome["images_seen"], wall_s=round(time.perf_counter() - start, 3),
        train_images_per_s=round(outcome["images_seen"] / max(outcome["train_s"], 1e-9), 2), device=str(dev),
        fidelity=prof.to_dict(), seed=seed, resolution=resolution, dataset=str(ds.root),
        train_images=len(ds.train), val_images=len(ds.val), skipped_images=len(ds.train.skipped) + len(ds.val.skipped),
        history=outcome.get("history", []), val_correct=outcome.get("val_correct"),
        resumed_from_epoch=outcome.get("resumed_from_epoch", 0), torch_threads=outcome.get("torch_threads", []),
        micro_batches=micro_batches,
    )


def refused_record(config: ArchConfig, profile: str | Profile, seed: int, device: str | torch.device, reason: str,
                   dataset: str = "") -> EvalRecord:
    """The "failed" record of a job refused before it trained (e.g. it would not fit in memory): the search
    tells its trial so, as of a diverged run, instead of the process being killed."""
    prof = get_profile(profile)
    return EvalRecord(
        config_id=config.id, config=config.to_dict(), status="failed", reason=reason, top1=None, top5=None,
        train_loss=None, epochs=0, images_seen=0, wall_s=0.0, train_images_per_s=0.0, device=str(device),
        fidelity=prof.to_dict(), seed=seed, resolution=train_resolution(config, prof.resolution_scale),
        dataset=dataset, train_images=0, val_images=0, skipped_images=0,
    )


def _train(config: ArchConfig, prof: Profile, ds: Dataset, dev: torch.device, seed: int, progress: bool,
           on_epoch: Callable[[EpochStats], None] | None, outcome: dict[str, Any],
           checkpoint_dir: Path | None = None, curve: bool = False, micro_batches: int = 1) -> nn.Module:
    """The training loop; fills ``outcome`` as it goes so that a failure still reports what was done.
    With ``checkpoint_dir`` it resumes from the checkpoint there and checkpoints after every epoch; with
    ``curve`` it measures validation accuracy after every epoch (the training curve). Each batch trains in
    ``micro_batches`` slices, and scoring runs in batches of two slices. Returns the trained network."""
    model = build_model(config).to(dev, memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(_param_groups(model, prof.weight_decay), lr=prof.lr)
    steps_per_epoch = max(1, len(ds.train) // prof.batch_size)
    total = steps_per_epoch * prof.epochs  # the schedule spans every epoch, wherever this run stops
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(step, total, round(prof.warmup_fraction * total), prof.min_lr_ratio)
    )
    runner = torch.compile(model) if prof.compile and dev.type == "cuda" else model
    autocast = torch.autocast("cuda", torch.bfloat16) if dev.type == "cuda" else nullcontext()
    generator = torch.Generator().manual_seed(seed)
    identity = {"config": config.to_dict(), "schedule": prof.schedule(), "seed": seed}
    if micro_batches > 1:  # another trajectory under BatchNorm: never continued as the unsplit one
        identity["micro_batches"] = micro_batches
    eval_batch = 2 * math.ceil(prof.batch_size / micro_batches)
    first_epoch, history = 1, []
    if checkpoint_dir is not None:
        restored = checkpoint.restore(checkpoint_dir, identity, model, optimizer, schedule, generator, outcome,
                                      prof.last_epoch)
        if restored is None:
            checkpoint_dir = None  # a longer run of this schedule is under way there: neither use nor overwrite it
        else:
            first_epoch, history = restored
            outcome["history"] = history  # the record's training curve
            outcome["resumed_from_epoch"] = first_epoch - 1
    bar = tqdm(total=steps_per_epoch * prof.last_epoch, initial=(first_epoch - 1) * steps_per_epoch,
               disable=not progress, unit="step", leave=False)
    train_start = time.perf_counter() - outcome["train_s"]  # resumed: wall time keeps counting
    try:
        for epoch in range(first_epoch, prof.last_epoch + 1):
            bar.set_description(f"epoch {epoch}/{prof.last_epoch}")
            outcome.setdefault("torch_threads", []).append(torch.get_num_threads())
            runner.train()
            loss_sum, batches = torch.zeros((), device=dev), 0
            for images, labels in iterate_batches(ds.train, prof.batch_size, shuffle=True, generator=generator,
                                                  drop_last=True):
                images, labels = _to_device(images, labels, dev)
                optimizer.zero_grad(set_to_none=True)
                with autocast:  # the whole batch's crops: the same augmentation however it is split
                    crops = random_resized_crop(images, generator, prof.crop_scale)
                loss = accumulate_gradients(runner, crops, labels, micro_batches,
                                            label_smoothing=prof.label_smoothing, autocast=autocast)
                del crops
                nn.utils.clip_grad_norm_(model.parameters(), prof.grad_clip)
                optimizer.step()
                schedule.step()
                loss_sum += loss
                batches += 1
                outcome["images_seen"] += len(labels)
                if batches % 10 == 0 or batches == steps_per_epoch:  # a host sync: not every step on a GPU
                    mean_loss = loss_sum.item() / batches
                    if not math.isfinite(mean_loss):
                        raise _Diverged(f"train loss {mean_loss} at epoch {epoch}, step {batches}")
                    outcome["train_s"] = time.perf_counter() - train_start
                    bar.set_postfix(loss=f"{mean_loss:.3f}", img_s=f"{outcome['images_seen'] / outcome['train_s']:.0f}")
                bar.update(1)
            outcome.update(epochs=epoch, train_loss=mean_loss, train_s=time.perf_counter() - train_start)
            if on_epoch is not None:
                on_epoch(EpochStats(epoch, prof.last_epoch, mean_loss, outcome["images_seen"], outcome["train_s"],
                                    outcome["images_seen"] / outcome["train_s"]))
            if curve:
                top1, _ = accuracy(runner, ds.val, eval_batch, dev)
                history.append({"epoch": epoch, "train_loss": mean_loss, "val_top1": top1,
                                "train_s": round(outcome["train_s"], 3)})
                outcome["history"] = history
            if checkpoint_dir is not None:
                checkpoint.save(checkpoint_dir, identity, epoch, model, optimizer, schedule, generator, outcome,
                                history)
    finally:
        bar.close()
    hits: list[np.ndarray] = []
    outcome["top1"], outcome["top5"] = accuracy(runner, ds.val, eval_batch, dev, hits)
    outcome["val_correct"] = encode_hits(hits[0])
    return model
