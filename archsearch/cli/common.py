"""Pieces shared by the subcommands: one-line errors, every option more than one command takes (defined once
here, with one help text), JSON output. Light on purpose: every command imports it."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from ..model.config import (
    FAMILIES,
    PRESETS,
    V1_VARIANTS,
    ArchConfig,
    ConfigError,
    preset,
)
from ..model.space import FactorSpace
from ..train.threads import ThreadChoice, join, parse_threads


class CLIError(Exception):
    """Bad user input: printed as one line, exit code 2."""


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the option (``--help`` still shows everything)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_study_option(parser: argparse.ArgumentParser) -> None:
    """``--study`` of the commands that read an existing study (``run`` names one its own way)."""
    parser.add_argument("--study", required=True, help="name of a study made by 'archsearch run' (it prints the name)")


def add_storage_option(parser: argparse.ArgumentParser) -> None:
    """``--storage`` of every command that opens studies; the default is ``search.study.default_storage()``."""
    parser.add_argument("--storage", metavar="URL",
                        help="Optuna storage URL (default: sqlite:///STUDIES/archsearch.db, STUDIES being "
                        "$ARCHSEARCH_STUDIES or else studies/ under the current directory); "
                        "postgresql://USER:PASS@HOST/DB for several processes or machines")


def add_data_option(parser: argparse.ArgumentParser) -> None:
    """``--data`` of the commands that train (``worker`` defaults to the study's own)."""
    parser.add_argument("--data", help="ImageFolder root with train/ and val/ (default: $ARCHSEARCH_DATA, else "
                        "Imagenette at shared/datasets/imagenette2-224 in or beside the current directory)")


def add_space_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup, family: str | None = "v2",
                     what: str = "factor-space TOML file") -> None:
    """``--space``; ``family`` None: the default is the space of the family the other options name."""
    which = f"the {family} space" if family else "the family's space"
    parser.add_argument("--space", help=f"{what} (default: {which} shipped in the package, "
                        f"archsearch/model/spaces/mobilevit_{family or '<family>'}.toml)")


def add_quiet_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_json_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--json``: ``what`` the command prints as JSON instead of text (e.g. 'the record')."""
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON instead of text")


def add_config_options(parser: argparse.ArgumentParser, space_option: bool = False) -> None:
    """Options that pick one architecture: a preset, optionally overridden, or explicit factors (and, with
    ``space_option``, the factor space they must lie in: ``checked_config``)."""
    group = parser.add_argument_group("architecture (a preset, or --family with factors)")
    group.add_argument("--preset", help=f"official architecture: {', '.join(PRESETS)}")
    group.add_argument("--family", choices=FAMILIES, help="v1 (multi-head attention) or v2 (separable attention)")
    group.add_argument("--variant", choices=V1_VARIANTS, help="v1 base variant that --width scales (default xxs)")
    group.add_argument("--resolution", type=int, help="input side in px, a multiple of 32 (default 256)")
    group.add_argument("--width", type=float, help="channel multiplier (default 1.0)")
    group.add_argument("--mv2-depth", type=float, help="multiplier of MV2 blocks per stage (default 1.0)")
    group.add_argument("--vit-depth", type=float, help="multiplier of attention layers per block (default 1.0)")
    group.add_argument("--num-classes", type=int, help="classifier outputs (default 1000)")
    if space_option:
        add_space_option(group, family=None, what="factor-space TOML file the factors must lie in")


FACTOR_OPTIONS = ("resolution", "width", "mv2_depth", "vit_depth", "num_classes")


def config_from_args(args: argparse.Namespace) -> ArchConfig:
    """The config the architecture options name; every bad value is a ``CLIError`` naming its option."""
    overrides = {k: getattr(args, k) for k in FACTOR_OPTIONS if getattr(args, k) is not None}
    if args.preset and (args.family or args.variant):
        raise CLIError("--preset cannot be combined with --family/--variant")
    if args.family == "v2" and args.variant:
        raise CLIError("--variant applies to --family v1 only")
    if not (args.preset or args.family):
        raise CLIError("name an architecture with --preset NAME or --family v1|v2 (and factors)")
    try:
        if args.preset:
            base = preset(args.preset)
        else:
            base = ArchConfig(args.family, variant=(args.variant or "xxs") if args.family == "v1" else None)
        return base.replace(**overrides)
    except ConfigError as err:
        raise as_option_error(err) from None


def checked_config(args: argparse.Namespace) -> ArchConfig:
    """``config_from_args``, checked against ``--space`` (or the family's default space)."""
    config = config_from_args(args)
    space = FactorSpace.load(args.space) if args.space else FactorSpace.default(config.family)
    try:
        space.check(config)
    except ValueError as err:
        raise as_option_error(err) from None
    return config


def as_option_error(err: ValueError) -> CLIError:
    """'width: 3 is not ...' (a config field) -> '--width: 3 is not ...' (the option the user typed)."""
    field, _, reason = str(err).partition(": ")
    return CLIError(f"--{field.replace('_', '-')}: {reason}")


def _threads(text: str) -> int | None:
    try:
        return parse_threads(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=_threads, default="auto", metavar="N|auto",
                        help="torch threads for training: N, or auto (default): the cores this process may use "
                        "(its CPU affinity) divided by the archsearch processes training on this host, re-read "
                        "before every trial; $OMP_NUM_THREADS, when set, counts as N")


def add_trial_latency_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--no-trial-latency", dest="trial_latency", action="store_false",
                        default=os.environ.get("ARCHSEARCH_TRIAL_LATENCY", "1") != "0",
                        help="do not time each trained config on the study's latency backend (default: timed, "
                        "30 runs after 10 warm-up runs, once per network, after its training; "
                        "$ARCHSEARCH_TRIAL_LATENCY=0 sets this too). Ignored under a latency budget, which checks every timing")


def join_threads(args: argparse.Namespace) -> ThreadChoice:
    """Register this training process on the host and set its torch threads (``--threads``); the caller
    prints the choice's one-line ``note()`` where its output has room for it."""
    return join(args.threads)


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def format_count(n: float) -> str:
    """1370593 -> '1.371M', 1844350976 -> '1.844G' (SI units, as MACs and params are usually quoted)."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3f}{unit}"
    return str(int(n))


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops like Ctrl-C (finished work is kept). A process forked under it that inherits the handler
    restores the default and just exits (the data loader's pool resets both signals itself at start-up:
    ``train.decoding.decoding_pool``)."""
    main_pid = os.getpid()

    def handler(signum: int, frame: object) -> None:
        if os.getpid() != main_pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
