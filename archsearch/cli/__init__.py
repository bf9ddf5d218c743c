"""The ``archsearch`` command line: one module per subcommand, each with ``register(subparsers)``.

Every subcommand sets ``handler`` (a function of the parsed args returning an exit code). Bad input of any
kind ends in one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..model.config import ConfigError
from .common import CLIError, OneLineErrorParser

# Subcommand modules of this package, in the order ``--help`` lists them.
COMMANDS = ("count", "presets", "train", "run", "formula", "dashboard", "export", "worker", "status", "bench_table",
            "replay", "latency", "latency_table")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="archsearch",
        description="Architecture search and scaling laws for MobileViT over resolution, width, "
        "MV2 depth and ViT depth.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineErrorParser)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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

