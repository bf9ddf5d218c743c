"""Latency tables: measured latencies of a space-filling sample of a space, and a per-block lookup table.

``archsearch latency-table`` writes, for one space, backend, batch and thread count:

* ``TABLE.csv`` -- one row per sampled network (``NETWORK_COLUMNS``). The sample is ``bench.select_configs``'s
  (greedy maximin in the encoded factor cube, round-robin over bands of log-MACs) over the whole MAC range of
  the space unless narrowed, so every part of the grid the predictor serves has measured neighbours. Networks
  are timed in chunks, interleaved within a chunk (``measure.time_targets``).
* ``TABLE_lut.csv`` -- one row per distinct block (``blocks.network_blocks``) of every network of the space's
  grid, each timed alone at its input shape: the Once-for-All-style lookup table.
* ``TABLE.json`` -- how both were made (space, backend, batch, threads, CPU or GPU, runtime versions, sample
  settings). Resuming with other settings, or on another device or runtime, is an error.

Rows are appended and flushed as each chunk finishes: an interruption loses at most the chunk in progress, and
re-running the command measures only what is missing (a larger ``--configs`` extends the same sample; a larger
``--passes`` measures every network again, a pass at a time, and a network's latency is the median of its
passes: load that drifts over the hours of a table hits every network in every pass).
"""

from __future__ import annotations

import csv
import io
import json
import os
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import __version__
from ..model.config import ArchConfig, ConfigError
from ..model.cost import closed_form_cost, distinct_networks
from ..model.space import FactorSpace
from .backends import LatencyError, backend_info
from .blocks import build_block, distinct_blocks
from .measure import STATISTICS, LatencyRecord, measure_configs, measure_modules

NETWORK_COLUMNS = ("config_id", "family", "variant", "resolution", "width", "mv2_depth", "vit_depth", "num_classes",
                   "macs", "params", "backend", "batch", "threads", "runs", "warmup", "rounds", "median_ms", "p25_ms",
                   "p75_ms", "min_ms", "max_ms", "cpu_median_ms", "discarded", "preempted", "device", "runtime",
                   "cores", "measured_at", "archsearch_version")
LUT_COLUMNS = ("block", "kind", "backend", "batch", "threads", "runs", "warmup", "rounds", "median_ms", "p25_ms",
               "p75_ms", "min_ms", "max_ms", "cpu_median_ms", "discarded", "preempted", "measured_at")
# Settings every row of a table shares: resuming with another value is an error.
CHECKED = ("family", "space", "num_classes", "backend", "batch", "threads", "device", "runtime", "min_macs",
           "max_macs", "sample_seed")


def default_table_path(family: str, backend: str, batch: int, threads: int) -> Path:
    """``benchmarks/latency_FAMILY_BACKEND_bBATCH_tTHREADS.csv`` under the current directory (the repository's
    own tables when run from its root; an installed package has no source tree to write into)."""
    return Path.cwd() / "benchmarks" / f"latency_{family}_{backend}_b{batch}_t{threads}.csv"


def meta_path(table: str | Path) -> Path:
    return Path(table).with_suffix(".json")


def lut_path(table: str | Path) -> Path:
    table = Path(table)
    return table.with_name(f"{table.stem}_lut.csv")


def model_path(table: str | Path) -> Path:
    """Where the fitted latency model of a table is kept (``predict.save_model``)."""
    table = Path(table)
    return table.with_name(f"{table.stem}_model.json")


# ---- rows --------------------------------------------------------------------------------------------
def read_rows(path: str | Path) -> list[dict[str, str]]:
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):  # a last line cut short by a kill mid-write
        with open(path, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)
    try:
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle))
    except (csv.Error, UnicodeDecodeError) as err:
        raise ConfigError(f"--out: {path} is not a readable CSV ({err})") from None


def append_rows(path: str | Path, rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> None:
    """Rows written with one ``write`` and flushed to disk (the header first if the file is new)."""
    path = Path(path)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    if not path.exists() or path.stat().st_size == 0:
        writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
    with open(path, "a", newline="") as handle:
        handle.write(buffer.getvalue())
        handle.flush()
        os.fsync(handle.fileno())


def _stats(record: LatencyRecord) -> dict[str, Any]:
    return {"backend": record.backend, "batch": record.batch, "threads": record.threads, "runs": record.runs,
            "warmup": record.warmup, "rounds": record.rounds, "median_ms": round(record.median_ms, 5),
            "p25_ms": round(record.p25_ms, 5), "p75_ms": round(record.p75_ms, 5), "min_ms": round(record.min_ms, 5),
            "max_ms": round(record.max_ms, 5),
            "cpu_median_ms": None if record.cpu_median_ms is None else round(record.cpu_median_ms, 5),
            "discarded": record.discarded, "preempted": record.preempted, "measured_at": record.measured_at}


def network_row(config: ArchConfig, record: LatencyRecord) -> dict[str, Any]:
    cost = closed_form_cost(config)
    return {"config_id": config.id, "family": config.family, "variant": config.variant or "",
            "resolution": config.resolution, "width": config.width, "mv2_depth": config.mv2_depth,
            "vit_depth": config.vit_depth, "num_classes": config.num_classes, "macs": cost.macs,
            "params": cost.params, **_stats(record), "device": record.device, "runtime": record.runtime,
            "cores": " ".join(map(str, record.cores)), "archsearch_version": __version__}


def row_config(row: dict[str, str]) -> ArchConfig:
    try:
        return ArchConfig(row["family"], resolution=int(row["resolution"]), width=float(row["width"]),
                          mv2_depth=float(row["mv2_depth"]), vit_depth=float(row["vit_depth"]),
                          num_classes=int(row["num_classes"]), variant=row.get("variant") or None)
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"latency table row {row.get('config_id', '?')!r}: {err}") from None


# ---- settings ----------------------------------------------------------------------------------------
def space_range(space: FactorSpace) -> tuple[int, int]:
    """Closed-form MACs of the cheapest and the dearest network of the space."""
    macs = [m for _, m in distinct_networks(space)]
    return min(macs), max(macs)


def table_meta(space: FactorSpace, space_dict: dict, backend: str, batch: int, threads: int, min_macs: int,
               max_macs: int, sample_seed: int) -> dict[str, Any]:
    # local: torch loads only to measure (light commands import the latency package, predict imports this)
    import torch

    return {"format": 1, "family": space.family, "space": space_dict, "num_classes": space.num_classes,
            "backend": backend, "batch": batch, "threads": threads, **backend_info(backend), "min_macs": min_macs,
            "max_macs": max_macs, "sample_seed": sample_seed, "torch": torch.__version__,
            "archsearch_version": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def open_table(out: Path, meta: dict[str, Any]) -> None:
    """Create the sidecar of a new table, or check that a table being resumed was made the same way."""
    side = meta_path(out)
    if side.exists():
        stored = json.loads(side.read_text())
        differing = [k for k in CHECKED if json.loads(json.dumps(stored.get(k))) != json.loads(json.dumps(meta[k]))]
        if differing:
            details = ", ".join(f"{k}: stored {stored.get(k)!r}" for k in differing if k != "space")
            details += ", space differs" if "space" in differing else ""
            raise LatencyError(f"--out: {out} was measured with other settings ({details.lstrip(', ')}); use the "
                               "same options on the same machine, or another --out")
    elif out.exists() and out.stat().st_size:
        raise LatencyError(f"--out: {out} exists without its settings file {side}; use another --out")
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        side.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


# ---- measuring ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Measured:
    """What one ``measure_table`` call did."""

    path: Path
    lut: Path | None
    networks: int  # in the sample
    networks_added: int  # measurements added (a network once per pass)
    blocks: int  # distinct blocks of the space's grid (0 without the lookup table)
    blocks_added: int


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def measure_table(out: str | Path, space: FactorSpace, space_dict: dict, sample: Sequence[ArchConfig],
                  backend: str, batch: int, threads: int, runs: int, warmup: int, rounds: int,
                  min_macs: int, max_macs: int, sample_seed: int = 0, chunk: int = 8, lut: bool = True,
                  passes: int = 1, progress: Callable[[str, int], Any] | None = None) -> Measured:
    """Time each network of ``sample`` until ``out`` holds ``passes`` rows of it, a whole pass over the sample
    at a time (so a second pass, minutes or hours later, meets other load), and (``lut``) every block of the
    space's grid not yet in the lookup table, appending rows chunk by chunk. ``progress(label, total)`` makes
    a progress bar."""
    out = Path(out)
    open_table(out, table_meta(space, space_dict, backend, batch, threads, min_macs, max_macs, sample_seed))
    done = Counter(row_config(r).network_key() for r in read_rows(out))
    total = len(sample) * passes
    bar = progress("networks", total) if progress else None
    if bar is not None:
        bar.update(sum(min(done[c.network_key()], passes) for c in sample))
    added = 0
    for p in range(passes):
        for part in chunks([c for c in sample if done[c.network_key()] <= p], chunk):
            records = measure_configs(part, backend, batch, threads, runs, warmup, rounds)
            append_rows(out, [network_row(c, r) for c, r in zip(part, records)], NETWORK_COLUMNS)
            done.update(c.network_key() for c in part)
            added += len(part)
            if bar is not None:
                bar.update(len(part))
    if bar is not None:
        bar.close()
    blocks = blocks_added = 0
    if lut:
        blocks, blocks_added = measure_lut(lut_path(out), space, backend, batch, threads, runs, warmup, rounds,
                                           4 * chunk, progress)
    return Measured(out, lut_path(out) if lut else None, len(sample), added, blocks, blocks_added)


def measure_lut(path: Path, space: FactorSpace, backend: str, batch: int, threads: int, runs: int, warmup: int,
                rounds: int, chunk: int, progress: Callable[[str, int], Any] | None = None) -> tuple[int, int]:
    """Time every distinct block of the space's grid that ``path`` lacks; ``(blocks, measured now)``."""
    wanted = distinct_blocks(c for c, _ in distinct_networks(space))
    done = {r["block"] for r in read_rows(path)}
    todo = [b for b in wanted if b.key not in done]
    bar = progress("blocks", len(wanted)) if progress else None
    if bar is not None:
        bar.update(len(wanted) - len(todo))
    for part in chunks(todo, chunk):
        items = [(b.key, *build_block(b, batch)) for b in part]
        records = measure_modules(items, backend, threads, runs, warmup, min(rounds, runs))
        append_rows(path, [{"block": b.key, "kind": b.kind, **_stats(r)} for b, r in zip(part, records)],
                    LUT_COLUMNS)
        if bar is not None:
            bar.update(len(part))
    if bar is not None:
        bar.close()
    return len(wanted), len(todo)


# ---- reading -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LatencyTable:
    """A measured table: the networks, their latency by ``statistic`` (the median wall time, or the median
    thread CPU time: ``LatencyRecord.latency_ms``; the median over the passes of a network measured more than
    once), the wall-time quartiles, every pass's latency (``passes_ms``), the lookup table by the same
    statistic (block key -> ms; empty without one) and the settings it was measured with."""

    path: Path
    space: FactorSpace
    meta: dict[str, Any]
    statistic: str
    configs: tuple[ArchConfig, ...]
    macs: tuple[int, ...]
    latency_ms: tuple[float, ...]
    p25_ms: tuple[float, ...]
    p75_ms: tuple[float, ...]
    lut: dict[str, float]
    passes_ms: tuple[tuple[float, ...], ...] = ()

    @property
    def backend(self) -> str:
        return self.meta["backend"]

    def repeatability(self) -> dict[str, Any] | None:
        """How far the first two passes over a network differ (absolute percentage of the first): the noise
        under any predictor's error on this machine. None without networks measured twice."""
        diffs = sorted(100 * abs(p[1] - p[0]) / p[0] for p in self.passes_ms if len(p) > 1)
        if not diffs:
            return None
        return {"networks": len(diffs), "median_ape": statistics.median(diffs),
                "p90_ape": diffs[min(len(diffs) - 1, round(0.9 * (len(diffs) - 1)))], "max_ape": diffs[-1]}


def _value(row: dict[str, str], statistic: str, path: Path) -> float:
    column = "median_ms" if statistic == "wall" else "cpu_median_ms"
    try:
        return float(row[column])
    except (KeyError, TypeError, ValueError):
        what = row.get("config_id") or row.get("block")
        raise LatencyError(f"--statistic: {path} has no {statistic} time for {what} (cpu time is measured for "
                           "single-threaded CPU backends only)") from None


def load_latency_table(path: str | Path, statistic: str = "wall", option: str = "--table") -> LatencyTable:
    """Read a table, its sidecar and its lookup table (if measured); one-line errors naming ``option``."""
    if statistic not in STATISTICS:
        raise LatencyError(f"--statistic: unknown {statistic!r}; choose from {', '.join(STATISTICS)}")
    path = Path(path)
    side = meta_path(path)
    if not path.is_file():
        raise LatencyError(f"{option}: no such file {path}")
    if not side.is_file():
        raise LatencyError(f"{option}: {path} has no settings file {side}")
    meta = json.loads(side.read_text())
    space = FactorSpace.from_dict(meta["space"]).with_num_classes(int(meta["num_classes"]))
    rows = read_rows(path)
    if not rows:
        raise LatencyError(f"{option}: {path} has no rows yet")
    networks: dict[tuple, tuple[ArchConfig, list[dict[str, str]]]] = {}
    for row in rows:
        config = row_config(row)
        networks.setdefault(config.network_key(), (config, []))[1].append(row)
    kept = list(networks.values())
    lut = {r["block"]: _value(r, statistic, path) for r in read_rows(lut_path(path))}
    passes = tuple(tuple(_value(r, statistic, path) for r in rs) for _, rs in kept)
    return LatencyTable(path, space, meta, statistic, tuple(c for c, _ in kept),
                        tuple(closed_form_cost(c).macs for c, _ in kept), tuple(statistics.median(p) for p in passes),
                        tuple(statistics.median(float(r["p25_ms"]) for r in rs) for _, rs in kept),
                        tuple(statistics.median(float(r["p75_ms"]) for r in rs) for _, rs in kept), lut, passes)
