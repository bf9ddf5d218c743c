"""``archsearch dashboard --study NAME``: a study as one self-contained HTML page of Plotly figures."""

from __future__ import annotations

import argparse
import sys
import warnings
import webbrowser
from pathlib import Path

from ..report.dashboard import default_path, write_dashboard
from ..search.study import (
    check_name,
    default_storage,
    is_sqlite,
    make_storage,
    open_study,
    redact,
)
from .common import CLIError, add_storage_option, add_study_option


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "dashboard",
        help="write a study's interactive HTML dashboard (factor cube, GP maps, Pareto front, rungs, history)",
        description="Write one self-contained HTML file (plotly.js embedded: works offline) showing a study: "
        "its settings, the winner and its margin over each baseline with a 95 % interval, the 4-D factor cube "
        "with the MAC-budget surface, GP maps of the joint factors, 1-D marginals, the accuracy-vs-MACs Pareto "
        "front at the deciding rung, every network's score across the rungs, and the search history. Example: "
        "archsearch dashboard --study v2-300M-gp-smoke-e2-smoke-s0 --open",
    )
    add_study_option(parser)
    add_storage_option(parser)
    parser.add_argument("--out", help="HTML file to write (default: dashboards/NAME.html, or "
                                      "$ARCHSEARCH_DASHBOARDS/NAME.html)")
    parser.add_argument("--open", action="store_true", help="open the dashboard in the default web browser")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    name = check_name(args.study)
    storage_url = args.storage or default_storage()
    if is_sqlite(storage_url):
        db = storage_url.split("///", 1)[-1] if "///" in storage_url else ""
        if not db or db == ":memory:" or not Path(db).is_file():
            raise CLIError(f"--storage: no study database at {redact(storage_url)}"
                           + ("" if args.storage else "; run archsearch run first, or pass --storage URL"))
    with warnings.catch_warnings():  # Optuna's experimental-feature notices about heartbeats
        warnings.simplefilter("ignore")
        study = open_study(name, make_storage(storage_url), None)

    out = Path(args.out) if args.out else default_path(name)
    if out.is_dir():
        raise CLIError(f"--out: {out} is a folder; give the HTML file to write")
    try:
        path = write_dashboard(study, storage_url, out)
    except OSError as err:
        raise CLIError(f"--out: cannot write {out}: {err.strerror or err}") from None
    print(f"dashboard: {path}")
    if args.open and not webbrowser.open(path.resolve().as_uri()):
        print(f"could not start a web browser; open {path.resolve().as_uri()} yourself", file=sys.stderr)
    return 0
