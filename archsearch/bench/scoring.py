"""Scoring a table (``archsearch bench-table``): every config of the sample trained once, a row appended as each
finishes, resumable; ``<table>.json`` beside it records how it was made (``table_meta``), and resuming with other
settings, or on another kind of device, is an error (``check_meta``). The sample, the profiles and the rows are
``table``'s.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .. import __version__
from ..model.config import ConfigError
from ..train import loop as training
from ..train import threads
from ..train.data import fingerprint, resolve_data_root
from .table import (
    BASELINE_BUDGETS,
    append_row,
    baseline_configs,
    exact_resolution,
    load_space,
    make_row,
    meta_path,
    read_rows,
    resolve_profile,
    row_config,
    select_configs,
)

# Settings a table's rows must share: resuming with any other value is an error.
CHECKED = ("family", "space", "min_macs", "max_macs", "sample_seed", "baseline_budgets", "profile", "seed",
           "data_name", "device_type")


def _repair_tail(path: Path) -> None:
    """Drop a last line cut short by a kill mid-write (the file must end with a newline)."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


@dataclass(frozen=True)
class TableRun:
    path: Path
    selected: int  # configs in the sample
    skipped: int  # already in the table
    added: int  # scored by this run
    rescored: int = 0  # of them, configs whose earlier row had another trained resolution than today's


def table_meta(space_dict: dict, min_macs: int, max_macs: int, sample_seed: int, profile, seed: int,
               data_root: Path, device) -> dict[str, Any]:
    return {
        "format": 1, "family": space_dict.get("family"), "space": space_dict, "min_macs": min_macs,
        "max_macs": max_macs, "sample_seed": sample_seed, "baseline_budgets": list(BASELINE_BUDGETS),
        "profile": profile.to_dict(), "seed": seed, "data_name": data_root.name, "data_path": str(data_root),
        "data_fingerprint": fingerprint(data_root), "device_type": device.type,
        "device_name": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "note": ("scored on a GPU" if device.type == "cuda" else "scored on a CPU" + (
            "" if profile.name in ("proxy", "full") else f", with {profile.name}: a profile reduced from the GPU's "
            "proxy profile")),
        "torch": torch.__version__, "archsearch_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _json_roundtrip(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def check_meta(stored: dict, current: dict, table: Path) -> None:
    differing = [k for k in CHECKED if _json_roundtrip(stored.get(k)) != _json_roundtrip(current.get(k))]
    if differing:
        details = ", ".join(f"{k}: stored {stored.get(k)!r}" for k in differing if k not in ("space", "profile"))
        details += "".join(f", {k} differs" for k in ("space", "profile") if k in differing)
        raise ConfigError(f"--out: {table} was made with other settings ({details.lstrip(', ')}); "
                          "use the same options, or another --out")
    if stored.get("data_fingerprint") != current.get("data_fingerprint"):
        print(f"warning: the data at {current['data_path']} differs from the fingerprint stored in "
              f"{meta_path(table)} (moved, copied or edited?); new rows are appended to the same table",
              file=sys.stderr)


def generate_table(out: str | Path, n: int, min_macs: int, max_macs: int, profile: str, seed: int = 0,
                   data: str | Path | None = None, space_file: str | Path | None = None, sample_seed: int = 0,
                   progress: bool = True, device: str | None = None, curve: bool = False) -> TableRun:
    """Score the first ``n`` configs of the sample not yet in ``out``, appending a row as each finishes
    (with ``curve``, also the validation top-1 after every epoch: what a continued promotion would see)."""
    if n < 1:
        raise ConfigError(f"--configs: {n} is not a positive number")
    out = Path(out)
    prof = resolve_profile(profile)
    space, space_dict = load_space(space_file)
    root = resolve_data_root(data)
    dev = torch.device(device) if device else training.default_device()
    meta = table_meta(space_dict, min_macs, max_macs, sample_seed, prof, seed, root, dev)
    side = meta_path(out)
    if side.exists():
        check_meta(json.loads(side.read_text()), meta, out)
    elif out.exists() and out.stat().st_size:
        raise ConfigError(f"--out: {out} exists without its settings file {side}; use another --out")
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        side.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    if out.exists():
        _repair_tail(out)
    done, stale = set(), set()
    for row in read_rows(out):
        if row.get("profile") != prof.name or str(row.get("seed")) != str(seed):
            raise ConfigError(f"--out: {out} holds rows of profile {row.get('profile')!r}, seed {row.get('seed')}; "
                              f"this run is profile {prof.name!r}, seed {seed}: use another --out")
        config = row_config(row, space)
        (done if exact_resolution(row, config, prof) else stale).add(config.network_key())
    sample = select_configs(space, n, min_macs, max_macs, sample_seed, baseline_configs(space))
    todo = [(c, m) for c, m in sample if c.network_key() not in done]
    rescored = sum(c.network_key() in stale for c, _ in todo)
    if rescored and progress:
        print(f"{rescored} config(s) of {out} were trained at another resolution than today's exact one (the old "
              "rounding): scored again, and replays read the new rows", file=sys.stderr)
    bar = tqdm(total=len(sample), initial=len(sample) - len(todo), desc="configs", unit="config",
               disable=not progress, dynamic_ncols=True)
    added = 0
    try:
        for config, macs in todo:
            bar.set_postfix_str(f"{config.id} {macs / 1e6:.0f}M")
            threads.rebalance()  # other workers may have started or ended on this host
            record = training.evaluate(config, prof, root, seed, progress=False, device=dev, curve=curve,
                                       on_epoch=lambda _stats: threads.rebalance())
            append_row(out, make_row(config, record, prof.name, seed, root.name))
            added += 1
            bar.update(1)
    finally:
        bar.close()
    return TableRun(out, len(sample), len(sample) - len(todo), added, rescored)
