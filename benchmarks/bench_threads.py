"""Two archsearch trainings at once on one host: torch's default threads against the shared threads (issue 14).

    python benchmarks/bench_threads.py [--preset mobilevitv2_050] [--profile smoke] [--data PATH] [--seed 0]

Each scenario runs ``archsearch train --quiet --json`` in fresh processes and prints their wall times:

* ``alone``: one process, ``--threads auto`` (no other worker: all of its cores);
* ``two, default threads``: two processes at once, each with one thread per core it may use -- what torch
  does by default, and what archsearch did before the threads were shared;
* ``two, shared threads``: two processes at once with ``--threads auto``: the host's cores divided between them.

The dataset is decoded into the cache by a first, untimed process, so that every timed run maps the same
store. Run it on an otherwise idle machine: any other load distorts the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from archsearch.train.threads import cores_available


def train(args: argparse.Namespace, threads: str, env: dict) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "archsearch", "train", "--preset", args.preset, "--profile", args.profile,
           "--seed", str(args.seed), "--threads", threads, "--quiet", "--json"]
    if args.data:
        cmd += ["--data", args.data]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(proc: subprocess.Popen, started: float) -> dict:
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"archsearch train failed ({proc.returncode}): {err.strip()[-2000:]}")
    record = json.loads(out)
    note = next((line for line in err.splitlines() if line.startswith("threads:")), "")
    return {"wall_s": wall, "record_s": record["wall_s"], "top1": record["top1"], "threads": note}


def scenario(args: argparse.Namespace, threads: list[str], env: dict) -> list[dict]:
    started = time.perf_counter()
    procs = [train(args, t, env) for t in threads]
    return [finish(p, started) for p in procs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="mobilevitv2_050", help="architecture trained (default mobilevitv2_050)")
    parser.add_argument("--profile", default="smoke", help="training profile (default smoke; tiny to try the script)")
    parser.add_argument("--data", help="ImageFolder root (default: archsearch's default dataset)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    args = parser.parse_args()

    cores = len(cores_available())
    with tempfile.TemporaryDirectory() as registry:
        # An empty worker registry of its own, and no OMP_NUM_THREADS: it would count as an explicit request.
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        env["ARCHSEARCH_WORKERS_DIR"] = registry
        print(f"{args.preset}, profile {args.profile}, {cores} core(s) available; warming the data cache ...",
              flush=True)
        scenario(args, ["1"], env)
        rows = [("alone", scenario(args, ["auto"], env)),
                ("two, default threads", scenario(args, [str(cores), str(cores)], env)),
                ("two, shared threads", scenario(args, ["auto", "auto"], env))]
    # process s: start to exit, as a user waits for it; record s: the record's wall_s (data, training, evaluation)
    print(f"{'scenario':<24} {'process':>7} {'process s':>9} {'record s':>8} {'top-1':>7}  threads")
    for name, results in rows:
        for i, r in enumerate(results):
            print(f"{name:<24} {i + 1:>7} {r['wall_s']:>9.1f} {r['record_s']:>8.1f} {r['top1']:>7.3f}  {r['threads']}")


if __name__ == "__main__":
    main()
