"""Do two runs of one search give the same trial records? (the refactor check of issue 21)

Run: python benchmarks/compare_studies.py DB_A DB_B [--study NAME]. Each DB is a study storage URL or a path
to an SQLite file. Trials are matched by number; for each, the job (network, rung, seed, role) must be the
same and the training record equal field by field, except what measures time or the machine's speed (wall
clocks, images per second, timestamps, the latency timings). Scores, losses, per-epoch histories and the
per-image validation hits must be bit-identical. Prints one line per trial and a verdict; exit 1 on any
difference.
"""

from __future__ import annotations

import argparse
import sys

import optuna

TIMING = {"wall_s", "train_images_per_s", "images_per_s", "seconds", "started", "finished"}


def _url(db: str) -> str:
    return db if "://" in db else f"sqlite:///{db}"


def _strip(value):
    """The record without what measures time (recursively)."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def trials(db: str, study: str | None) -> dict[int, optuna.trial.FrozenTrial]:
    storage = optuna.storages.RDBStorage(_url(db))
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    name = study or (names[0] if len(names) == 1 else None)
    if name is None:
        sys.exit(f"{db}: holds {len(names)} studies; name one with --study")
    return {t.number: t for t in optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--study")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    a, b = trials(args.a, args.study), trials(args.b, args.study)
    differ = 0
    for n in sorted(a.keys() & b.keys()):
        ta, tb = a[n], b[n]
        job = [(t.user_attrs.get(k)) for t in (ta, tb) for k in ("config_id", "rung", "seed", "role")]
        same_job = job[:4] == job[4:]
        same_record = _strip(ta.user_attrs.get("record")) == _strip(tb.user_attrs.get("record"))
        same_score = ta.user_attrs.get("accuracy") == tb.user_attrs.get("accuracy")
        ok = same_job and same_record and same_score and ta.state == tb.state
        differ += not ok
        print(f"trial {n:>3} {ta.state.name:<8} {job[0] or '-':<34} rung {job[1]} seed {job[2]}: "
              f"top-1 {ta.user_attrs.get('accuracy')!r} vs {tb.user_attrs.get('accuracy')!r} -- "
              + ("identical" if ok else f"DIFFERENT (job {same_job}, record {same_record}, state {ta.state == tb.state})"))
    only = sorted(a.keys() ^ b.keys())
    print(f"{len(a.keys() & b.keys())} trials compared, {differ} differ; only in one study: {only or 'none'}")
    return 1 if differ or only else 0


if __name__ == "__main__":
    sys.exit(main())
