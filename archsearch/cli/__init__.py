"""The ``archsearch`` command line: one module per subcommand, each with ``register(subparsers)``.

Only the chosen command's module is imported (its ``register`` builds its parser): ``archsearch --help`` and
every other command list the rest from ``COMMANDS``, so a light command never pays for torch, optuna or plotly.
Every subcommand sets ``handler`` (a function of the parsed args returning an exit code). Bad input of any
kind ends in one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..model.config import ConfigError
from .common import CLIError, OneLineErrorParser

# name -> (module of this package, the one line ``archsearch --help`` shows), in the order ``--help`` lists them.
# The module's register() gives its parser the same help (tests/cli/test_cli_count.py checks they agree).
COMMANDS: dict[str, tuple[str, str]] = {
    "count": ("count", "params and MACs of one architecture (fvcore and closed form), per stage"),
    "presets": ("presets", "list the official architectures with params and MACs"),
    "train": ("train", "proxy-train one architecture on an ImageNet-format dataset and report its accuracy"),
    "run": ("run", "search for the most accurate MobileViT within a MAC budget"),
    "formula": ("formula", "apply the scaling formula of a study to any MAC budget, or check a family's law at a "
                "held-out budget"),
    "dashboard": ("dashboard", ("write a study's interactive HTML dashboard (factor cube, GP maps, Pareto "
                                "front, rungs, history)")),
    "export": ("export", "export a study's winner to the trainers: JSON, ml-cvnets, timm, ONNX"),
    "quantize": ("quantize", ("quantize a trained network (int8 on ONNX Runtime, 6-bit simulated) and measure its "
                              "accuracy drop")),
    "worker": ("worker", "train trials of an existing study (start any number, on any machines)"),
    "status": ("status", "jobs done/running/failed per worker and per rung, and the winner so far"),
    "bench-table": ("bench_table", "score a space-filling sample of configs into a table for replays (resumable)"),
    "replay": ("replay", "run the search strategies against bench-tables instead of training"),
    "latency": ("latency", "inference latency of one architecture on ONNX Runtime, PyTorch CPU or a GPU"),
    "latency-table": ("latency_table", ("measure a space-filling sample of a space's latency and fit its "
                                        "latency predictor (resumable)")),
}


def chosen_command(argv: list[str]) -> str | None:
    """The subcommand ``argv`` names: its first word that is not an option (the top level takes none but -h)."""
    for word in argv:
        if word == "--":
            continue
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``archsearch`` parser: ``command`` (if any) gets its real parser; every other command a stub that
    only lists it (name and help), so no other command module is imported."""
    parser = OneLineErrorParser(
        prog="archsearch",
        description="Architecture search and scaling laws for MobileViT over resolution, width, "
        "MV2 depth and ViT depth.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineErrorParser)
    for name, (module, help_line) in COMMANDS.items():
        if name == command:
            importlib.import_module(f"{__name__}.{module}").register(sub)
        else:
            sub.add_parser(name, help=help_line)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(chosen_command(argv)).parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (CLIError, ConfigError) as err:
        print(f"archsearch {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"archsearch {args.command}: interrupted", file=sys.stderr)
        return 130
