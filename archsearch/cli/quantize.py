"""``archsearch quantize``: post-training quantization of a trained network, measured as it would be deployed."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..quant.evaluate import ALL_METHODS, BITS, Report, quantize_network
from .common import (
    CLIError,
    add_data_option,
    add_json_option,
    add_quiet_option,
    add_storage_option,
    print_json,
)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "quantize",
        help="quantize a trained network (int8 on ONNX Runtime, 6-bit simulated) and measure its accuracy drop",
        description="Post-training quantization of a network trained by 'archsearch run' (its deciding rung's "
        "networks keep their weights) or 'archsearch train --save'. For each method and bit width: top-1 on the "
        "full validation set at the side it was trained at, the drop from float with a paired 95 % interval, "
        "agreement with the float network's top-1, model size and batch-1 latency on ONNX Runtime (one thread, "
        "float and int8 timed interleaved). 8 bits run as a real int8 ONNX model in ONNX Runtime; 6 bits are "
        "simulated by fake quantization in torch (no CPU runtime executes them). Calibration images come from "
        "the training split, never the validation split. Example: archsearch quantize --study NAME --bits 8",
    )
    source = parser.add_argument_group("network (one of)")
    source.add_argument("--study", help="a study made by 'archsearch run': its winner, or --trial N")
    source.add_argument("--trial", type=int, help="with --study: this trial (at the deciding rung) instead of the winner")
    source.add_argument("--weights", metavar="FILE", help="weights written by 'archsearch train --save FILE'")
    add_storage_option(parser)
    parser.add_argument("--bits", type=int, action="append", metavar="8|6",
                        help="bit width of weights and activations; repeat for both (default: 8 and 6)")
    parser.add_argument("--method", action="append", metavar="NAME",
                        help="minmax (per-tensor asymmetric min/max, the naive baseline), ort (ONNX Runtime's "
                        "static quantizer, 8 bits only, its best calibration), hybrid (Q-HyViT: per-layer "
                        "granularity, scheme and scale searched against each block's output), or all "
                        "(default); repeat to choose several")
    parser.add_argument("--calib", type=int, default=32, metavar="N",
                        help="calibration images, drawn from the training split (default 32, as Q-HyViT)")
    parser.add_argument("--runs", type=int, default=30, help="timed latency runs per model (0: no latency)")
    parser.add_argument("--out", help="folder for the ONNX models (default: beside the weights, NAME-quant/)")
    add_data_option(parser)
    add_quiet_option(parser)
    add_json_option(parser, "the report")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    bits = tuple(dict.fromkeys(args.bits or BITS))
    if bad := [b for b in bits if b not in BITS]:
        raise CLIError(f"--bits: {bad[0]} is not 8 or 6")
    methods = _methods(args.method or ["all"])
    if methods == ("ort",) and 8 not in bits:
        raise CLIError("--method ort: ONNX Runtime's quantizer writes int8 only; add --bits 8")
    if args.calib < 1:
        raise CLIError(f"--calib: {args.calib} is not a positive number of images")
    if args.runs < 0:
        raise CLIError(f"--runs: {args.runs} is negative")
    weights = _weights_file(args)
    out = Path(args.out) if args.out else weights.with_name(f"{weights.stem}-quant")
    report = quantize_network(weights, methods, bits, args.calib, args.data, out, args.runs, not args.quiet)
    if args.json:
        print_json(report.to_dict())
    else:
        print(render(report))
        print(f"  models: {out}")
    return 0


def _methods(names: list[str]) -> tuple[str, ...]:
    chosen: list[str] = []
    for name in names:
        if name == "all":
            chosen += ALL_METHODS
        elif name in ALL_METHODS:
            chosen.append(name)
        else:
            raise CLIError(f"--method: unknown {name!r}; choose from {', '.join(ALL_METHODS)}, all")
    return tuple(m for m in ALL_METHODS if m in chosen)


def _weights_file(args: argparse.Namespace) -> Path:
    """The weights to quantize: ``--weights``, or those a study kept for its winner or ``--trial``."""
    if bool(args.weights) == bool(args.study):
        raise CLIError("name the network with --study NAME [--trial N] or with --weights FILE")
    if args.trial is not None and not args.study:
        raise CLIError("--trial needs --study")
    if args.weights:
        if not Path(args.weights).is_file():
            raise CLIError(f"--weights: {args.weights} does not exist")
        return Path(args.weights)
    # local: a study's reader brings optuna and the GP, which --weights does not need
    from ..export.record import select_trial
    from ..search.study import default_storage, make_storage, open_study, quiet_optuna

    quiet_optuna()
    url = args.storage or default_storage()
    source = select_trial(open_study(args.study, make_storage(url), None), url, args.trial)
    if source.weights is None:
        raise CLIError(f"trial {source.trial['trial']} of study {args.study!r} has no kept weights (a study keeps "
                       "those of its deciding rung's networks; name one with --trial)")
    return source.weights


def render(report: Report) -> str:
    lines = [(f"{report.network} at {report.resolution} px: float top-1 {100 * report.float_top1:.2f}% on "
              f"{report.val_images:,} validation images; {report.calibration_images} calibration images from the "
              f"training split; ONNX Runtime {report.onnxruntime}"),
             f"  float: {report.float_size_bytes / 1e6:.2f} MB" + _latency(report.float_latency)]
    if report.int8_weight_bits < 8:
        lines.append(f"  int8 models hold {report.int8_weight_bits}-bit weights (reduce_range): this CPU has no VNNI, "
                     "and its int8 kernels saturate with full-range weights")
    for o in report.outcomes:
        low, high = o.drop_interval
        size = f", {o.size_bytes / 1e6:.2f} MB" if o.size_bytes else ""
        kernels = f", {o.int8_kernels['int8']} int8 kernels / {o.int8_kernels['float']} float" \
            if o.int8_kernels else ""
        lines.append(f"  {o.method:<7} {o.bits}-bit: top-1 {100 * o.top1:.2f}%  drop {o.drop:+.2f} "
                     f"[{low:+.2f}, {high:+.2f}] points, agrees with float on {100 * o.agreement:.1f}%"
                     f"{size}{_latency(o.latency)}{kernels}")
        lines.append(f"          {o.executed}" + (f"; {o.note}" if o.note else ""))
    for bits in sorted({o.bits for o in report.outcomes}, reverse=True):
        best = report.best(bits)
        lines.append(f"  best at {bits} bits: {best.method} (drop {best.drop:+.2f} points)")
    return "\n".join(lines)


def _latency(latency: dict | None) -> str:
    if not latency:
        return ""
    return (f", latency {latency['latency_ms']:.2f} ms [{latency['p25_ms']:.2f}, {latency['p75_ms']:.2f}] "
            f"(batch 1, {latency['threads']} thread)")

