"""``archsearch latency``: inference latency of one architecture on a backend, median and spread."""

from __future__ import annotations

import argparse

from ..latency.backends import (
    BACKENDS,
    DEFAULT_BACKEND,
    check_backend,
    parse_cores,
    pin_cores,
)
from ..latency.measure import (
    DEFAULT_WARMUP,
    MIN_CLI_RUNS,
    format_record,
    measure_latency,
)
from .common import (
    CLIError,
    add_config_options,
    add_json_option,
    checked_config,
    print_json,
)


def add_timing_options(parser: argparse.ArgumentParser, runs_default: int) -> None:
    """Backend, batch, threads, runs, warm-up and core pinning: shared with ``latency-table``."""
    group = parser.add_argument_group("timing")
    group.add_argument("--backend", default=DEFAULT_BACKEND, help=f"{', '.join(BACKENDS)} (default {DEFAULT_BACKEND}):"
                       " ONNX Runtime on the CPU, eager PyTorch on the CPU, or PyTorch bf16 on a CUDA GPU")
    group.add_argument("--batch", type=int, default=1, help="images per inference (default 1)")
    group.add_argument("--threads", type=int, default=1,
                       help="intra-op threads of the runtime, pinned and recorded (default 1)")
    group.add_argument("--runs", type=int, default=runs_default,
                       help=f"timed runs; the median and quartiles are reported (default {runs_default}, at least "
                       f"{MIN_CLI_RUNS})")
    group.add_argument("--warmup", type=int, default=DEFAULT_WARMUP,
                       help=f"untimed runs first (default {DEFAULT_WARMUP})")
    group.add_argument("--cores", help="pin this process to these CPU cores first, e.g. 0 or 0-3 (as taskset -c; "
                       "default: leave the affinity as it is); the cores are recorded either way")


def check_timing_options(args: argparse.Namespace) -> None:
    check_backend(args.backend)
    for name in ("batch", "threads"):
        if getattr(args, name) < 1:
            raise CLIError(f"--{name}: {getattr(args, name)} is not a positive integer")
    if args.runs < MIN_CLI_RUNS:
        raise CLIError(f"--runs: {args.runs} is below {MIN_CLI_RUNS}; a median needs at least {MIN_CLI_RUNS} runs")
    if args.warmup < 0:
        raise CLIError(f"--warmup: {args.warmup} is negative")
    if args.cores:
        pin_cores(parse_cores(args.cores))


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "latency",
        help="inference latency of one architecture on ONNX Runtime, PyTorch CPU or a GPU",
        description="Measure the inference latency of one MobileViT (freshly initialised weights: trained ones "
        "take the same time): warm-up runs, then the median and quartiles of --runs timed runs, with the backend, "
        "batch, threads, CPU cores, device and runtime version that produced them. Example: archsearch latency "
        "--family v2 --width 0.5 --resolution 256 --backend ort-cpu --threads 1 --cores 0",
    )
    add_config_options(parser, space_option=True)
    add_timing_options(parser, runs_default=MIN_CLI_RUNS)
    add_json_option(parser, "the record (every timed run included)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = checked_config(args)
    check_timing_options(args)
    record = measure_latency(config, args.backend, args.batch, args.threads, args.runs, args.warmup)
    if args.json:
        print_json({**record.to_dict(), "config": config.to_dict(), "preset": args.preset})
    else:
        print(format_record(record))
    return 0
