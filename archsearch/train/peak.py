"""The measured peak resident memory of a training job: ``evaluate`` in a fresh Python process, its peak
resident set (VmHWM) read when it ends. What ``memory``'s constants are calibrated against (``benchmarks/memory.py``)
and what its tests hold the estimate to: a fresh process, so nothing this one loaded or freed is counted.

Run as ``python -m archsearch.train.peak JOB_JSON``: it prints one JSON line, ``{"peak": bytes, "status": ...}``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..model.config import ArchConfig


def measure_peak(config: ArchConfig, profile: str, data: str | Path, *, micro_batches: int = 1, threads: int = 1,
                 timeout: float = 1800, env: dict[str, str] | None = None, **overrides: Any) -> dict[str, Any]:
    """Train ``config`` with ``profile`` (fields replaced by ``overrides``) on ``data`` in a fresh process on
    ``threads`` torch threads; returns ``{"peak": its peak resident set in bytes, "status": the record's status}``."""
    job = {"config": config.to_dict(), "profile": profile, "data": str(data), "micro_batches": micro_batches,
           "overrides": overrides}
    child_env = {**os.environ, **(env or {}), "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-m", __name__, json.dumps(job)], capture_output=True, text=True,
                          timeout=timeout, env=child_env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the measured training failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child(job: dict[str, Any]) -> dict[str, Any]:
    # local: the parent (tests, benchmarks) needs no torch to start the child
    from .loop import evaluate

    record = evaluate(ArchConfig.from_dict(job["config"]), job["profile"], job["data"], progress=False,
                      micro_batches=job["micro_batches"], **job["overrides"])
    return {"peak": _peak_bytes(), "status": record.status}


def _peak_bytes() -> int:
    """This process's peak resident set since its ``exec``: Linux's VmHWM. Not ``ru_maxrss``, which Linux carries
    over ``exec`` from the forked parent: started from a large process (a long test session), every child
    reported the parent's size."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
