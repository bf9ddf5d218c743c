"""How much memory a training job needs, how much the machine has, and the micro-batch split that fits.

A job that outgrows memory is killed by the kernel without a word (a proxy run of ``v2-r288-w0.29`` at batch
128 reached 17.9 GB resident on a 24 GB machine), so every training asks first. ``estimate`` prices a job's
peak resident set (what ``ru_maxrss`` reports) in five parts:

- ``baseline``: Python, torch and archsearch loaded, measured (``BASELINE_BYTES``);
- ``weights``: parameters, their gradients and AdamW's two moments, plus gradient clipping's scratch;
- ``batch``: the whole batch as uint8 and its float crops, alive through every micro-batch of a step;
- ``activations``: the tensors autograd saves for backward at one micro-batch, counted by a forward pass of
  the network at batch 2, times ``ACTIVATION_FACTOR``, measured: what backward's gradients and the
  allocator's fragmentation add on top;
- ``store``: the decoded images of both splits (``data``: memory-mapped uint8, ``[N, side, side, 3]``), each
  page of which is resident once an epoch has read it.

The constants were calibrated against measured peaks (``benchmarks/memory.py``; figures in
``benchmarks/RESULTS.md``). ``plan_micro_batches`` then picks the fewest micro-batches (1, 2, 4, ... and at
last two images each) whose estimate fits ``available_bytes`` with ``HEADROOM`` to spare.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import resource
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..model.config import ArchConfig
from ..model.cost import closed_form_cost
from ..model.generator import build_model
from .data import image_counts
from .recipe import Profile, get_profile, train_resolution

GIB = 1 << 30
# BASELINE_BYTES and ACTIVATION_FACTOR: calibrated on 44 measured peaks of 12 jobs, both families, sides
# 128-288, batches 16-64, 0.9-8 GiB (benchmarks/memory.py; benchmarks/RESULTS.md): least-squares fits in
# relative error gave 296-305 MiB and 1.45-1.54; the factor is set at the top of that range, as a long run
# drifts a few per cent above the 8 steps measured. The estimate is then within 23 % of every peak (mean +3 %).
# What a fresh process holds besides the parts below: Python, torch, archsearch (220 MiB once imported) and
# what a first step adds (oneDNN's kernels and scratch).
BASELINE_BYTES = 300 << 20
# Peak activation memory over the bytes autograd saves: backward's gradients in flight and the allocator's
# fragmentation on top of the saved tensors (the CPU loop keeps freed memory in the process, and the same
# job's peak varies by up to 20 % from one process to the next with how its heap fragments).
ACTIVATION_FACTOR = 1.55
# Parameters, gradients and AdamW's two moments (fp32), plus a copy's worth of gradient-clipping scratch.
WEIGHT_BYTES_PER_PARAM = 20
# The batch's uint8 pixels (3 bytes) and its float32 crops (12 bytes) per pixel of the trained side.
BATCH_BYTES_PER_PIXEL = 15
# A split must leave this fraction of its estimate unclaimed: the estimate is within 25 % of measured peaks.
HEADROOM = 1.25


@dataclass(frozen=True)
class MemoryEstimate:
    """A job's peak resident memory (bytes), by part; see the module docstring for what each part holds."""

    baseline: int
    weights: int
    batch: int
    activations: int
    store: int
    side: int  # the trained side, px
    batch_size: int
    micro_batch: int  # images per micro-batch (the largest, where the batch does not divide evenly)

    @property
    def peak(self) -> int:
        return self.baseline + self.weights + self.batch + self.activations + self.store


@dataclass(frozen=True)
class MemoryPlan:
    """How a job trains within the memory there is: ``micro_batches`` slices of each batch, or not at all."""

    config_id: str
    estimate: MemoryEstimate  # at the chosen split (refused: at the finest, two images per micro-batch)
    whole_peak: int  # the estimate's peak at the whole batch, for the note
    micro_batches: int
    available: int  # bytes the machine could still give (``available_bytes``)
    resident: int  # bytes this process holds already, part of the estimate's peak
    fits: bool

    @property
    def needed(self) -> int:
        """What the job still has to claim, with ``HEADROOM``: the peak less what the process already holds."""
        return max(0, math.ceil(self.estimate.peak * HEADROOM) - self.resident)

    def note(self) -> str | None:
        """One line when the job is split or refused; None when it trains as asked."""
        est = self.estimate
        what = (f"{self.config_id} at {est.side} px, batch {est.batch_size} would peak at ~{self.whole_peak / GIB:.1f}"
                f" GiB, {self.available / GIB:.1f} GiB available")
        if not self.fits:
            return (f"not enough memory: {what}, and ~{est.peak / GIB:.1f} GiB (+{HEADROOM - 1:.0%} headroom) even "
                    f"in micro-batches of {est.micro_batch} images; free memory or train at a smaller profile")
        if self.micro_batches == 1:
            return None
        return (f"memory: {what}: training in {self.micro_batches} micro-batches of {est.micro_batch} "
                f"(~{est.peak / GIB:.1f} GiB; same effective batch, BatchNorm sees {est.micro_batch} images)")


# ---- the parts ---------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def saved_bytes_per_image(config: ArchConfig, side: int) -> int:
    """Bytes autograd saves for backward per training image of ``config`` at ``side``, parameters and the
    input left out: one forward pass and loss at batch 2, halved, on the CPU as training runs it.

    Not on the meta device, which costs nothing but prices another network: it runs v1's attention by the
    math path, which saves every attention matrix, where the CPU's flash kernel saves none (13 % more for
    v1-xxs at 256 px). Two images, not one: BatchNorm in training mode needs more than one value per channel
    (a network's last map is 1x1 at 32 px). They cost a forward pass and 2/batch of the job's activations.
    """
    with torch.random.fork_rng(devices=[]):  # the caller's RNG is not drawn from
        model = build_model(config).to(memory_format=torch.channels_last).train()
        images = torch.zeros(2, 3, side, side).contiguous(memory_format=torch.channels_last)
        excluded = {_address(p) for p in model.parameters()} | {_address(images)}
        saved: dict[int, int] = {}

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            if _address(tensor) not in excluded:  # a storage several ops save (conv input, norm output) is one
                saved[_address(tensor)] = tensor.untyped_storage().nbytes()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            F.cross_entropy(model(images), torch.zeros(2, dtype=torch.long), label_smoothing=0.1)
    return sum(saved.values()) // 2


def _address(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


def split_sizes(profile: Profile, data: str | Path | None = None,
                classes: str | Path | Sequence[str] | None = None) -> tuple[int, int, int]:
    """``(classes, training images, validation images)`` a profile loads from ``data`` (as ``load_dataset``
    counts them: files, before any unreadable one is skipped)."""
    train, val = image_counts(data, classes)
    return (len(train), sum(min(n, profile.train_per_class or n) for n in train),
            sum(min(n, profile.val_per_class or n) for n in val))


def estimate(config: ArchConfig, profile: str | Profile, batch_size: int | None = None, *,
             micro_batch: int | None = None, data: str | Path | None = None,
             classes: str | Path | Sequence[str] | None = None,
             sizes: tuple[int, int, int] | None = None) -> MemoryEstimate:
    """``config``'s peak resident memory when trained with ``profile`` (at ``batch_size``, default the
    profile's, in micro-batches of ``micro_batch`` images, default the whole batch) on ``data``; ``sizes``
    (``split_sizes``) spares scanning the data again."""
    prof = get_profile(profile)
    batch = batch_size or prof.batch_size
    micro = min(batch, micro_batch or batch)
    side = train_resolution(config, prof.resolution_scale)
    num_classes, train, val = sizes if sizes is not None else split_sizes(prof, data, classes)
    config = config.replace(num_classes=num_classes)
    pixels = side * side
    return MemoryEstimate(
        baseline=BASELINE_BYTES,
        weights=WEIGHT_BYTES_PER_PARAM * closed_form_cost(config).params,
        batch=BATCH_BYTES_PER_PIXEL * batch * pixels,
        activations=round(ACTIVATION_FACTOR * micro * saved_bytes_per_image(config, side)),
        store=3 * pixels * (train + val),
        side=side, batch_size=batch, micro_batch=micro,
    )


def estimate_peak_bytes(config: ArchConfig, profile: str | Profile, batch_size: int | None = None, *,
                        micro_batch: int | None = None, data: str | Path | None = None,
                        classes: str | Path | Sequence[str] | None = None) -> int:
    """A job's peak resident memory in bytes (``estimate(...).peak``)."""
    return estimate(config, profile, batch_size, micro_batch=micro_batch, data=data, classes=classes).peak


# ---- the machine -------------------------------------------------------------------------------------------
def available_bytes() -> int:
    """Memory this process could still claim without being killed: ``MemAvailable`` (free memory plus the
    page cache the kernel can drop), within the cgroup's limit where one is set. Fallbacks: free plus cached
    on kernels before 3.14, then free pages; where nothing can be read, the machine's total."""
    meminfo = _meminfo()
    if "MemAvailable" in meminfo:
        available = meminfo["MemAvailable"]
    elif "MemFree" in meminfo:
        available = meminfo["MemFree"] + meminfo.get("Cached", 0) + meminfo.get("Buffers", 0)
    else:
        available = _sysconf_bytes("SC_AVPHYS_PAGES") or _sysconf_bytes("SC_PHYS_PAGES") or sys.maxsize
    room = _cgroup_room()
    return min(available, room) if room is not None else available


def resident_bytes() -> int:
    """What this process holds now (``VmRSS``); where that cannot be read, its peak so far."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS reports bytes, Linux KiB


def _meminfo() -> dict[str, int]:
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return {}
    fields = {}
    for line in lines:
        name, _, value = line.partition(":")
        parts = value.split()
        if parts and parts[0].isdigit():
            fields[name] = int(parts[0]) * (1024 if parts[-1] == "kB" else 1)
    return fields


def _sysconf_bytes(name: str) -> int | None:
    try:
        return os.sysconf(name) * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _cgroup_room(membership: Path = Path("/proc/self/cgroup"), base: Path = Path("/sys/fs/cgroup")) -> int | None:
    """What this process's memory cgroup still allows (its limit less what it holds, inactive page cache
    excepted), or None without a limit: a container's limit is what its OOM killer enforces, whatever
    ``/proc/meminfo`` says. cgroup v2 (``memory.max``) or v1 (``memory.limit_in_bytes``), at the process's
    own path or, in a cgroup namespace, at the root."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "" and path:
            folders = [base / path.lstrip("/"), base]
            limit, usage, cache = "memory.max", "memory.current", "inactive_file"
        elif "memory" in controllers.split(","):
            folders = [base / "memory" / path.lstrip("/"), base / "memory"]
            limit, usage, cache = "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"
        else:
            continue
        for folder in folders:
            try:
                cap = (folder / limit).read_text().strip()
                used = int((folder / usage).read_text())
                stat = dict(line.split() for line in (folder / "memory.stat").read_text().splitlines())
            except (OSError, ValueError):
                continue
            if cap == "max" or int(cap) >= 1 << 60:  # no limit here
                break
            return max(0, int(cap) - used + int(stat.get(cache, 0)))
    return None


# ---- the plan ----------------------------------------------------------------------------------------------
def splits(batch_size: int) -> list[int]:
    """Micro-batch counts to try, fewest first: 1, 2, 4, ... and at last micro-batches of two images. Not of
    one: BatchNorm would normalise a single image by itself, and on a 1x1 map torch refuses it outright."""
    last = max(1, batch_size // 2)
    return [2**i for i in range(last.bit_length()) if 2**i < last] + [last]


def plan_micro_batches(config: ArchConfig, profile: str | Profile, *, data: str | Path | None = None,
                       classes: str | Path | Sequence[str] | None = None, available: int | None = None,
                       resident: int | None = None) -> MemoryPlan:
    """The fewest micro-batches whose estimate, with ``HEADROOM``, fits what is ``available`` besides what
    this process holds (``resident``, part of the estimate); ``fits`` False when two images each do not."""
    prof = get_profile(profile)
    sizes = split_sizes(prof, data, classes)
    available = available_bytes() if available is None else available
    resident = resident_bytes() if resident is None else resident
    name = config.replace(num_classes=sizes[0]).id
    whole = estimate(config, prof, sizes=sizes).peak
    for count in splits(prof.batch_size):
        est = estimate(config, prof, micro_batch=math.ceil(prof.batch_size / count), sizes=sizes)
        plan = MemoryPlan(name, est, whole, count, available, resident, True)
        if plan.needed <= available:
            return plan
    return dataclasses.replace(plan, fits=False)
