"""Default study names: one per search problem, the dataset included (issue 14, item 8)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import optuna

import archsearch.cli.run as run_command
from archsearch.cli import main
from archsearch.search.study import (
    NAME_PATTERN,
    data_tag,
    default_storage,
    default_study_name,
)


def name(data) -> str:
    return default_study_name("v2", 300_000_000, "gp", "smoke", 0, data)


def test_the_dataset_is_part_of_the_default_name(tmp_path, monkeypatch):
    a, b = tmp_path / "a" / "train", tmp_path / "b" / "train"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    assert name(a) != name(b)  # two folders both named train
    assert name(a).startswith("v2-300M-gp-smoke-s0-train-") and NAME_PATTERN.match(name(a))
    monkeypatch.chdir(tmp_path / "a")
    assert name("train") == name(f"{a}/") == name(tmp_path / "b" / ".." / "a" / "train") == name(a)


def test_awkward_folder_names_still_give_a_valid_name(tmp_path):
    for path in (tmp_path / "my data (2024)", tmp_path / ("x" * 200), tmp_path / "...", tmp_path / "ünïcode",
                 Path("/"), Path("relative/path")):
        assert NAME_PATTERN.match(name(path)), path
        assert len(data_tag(path)) <= 47


def test_run_on_other_data_opens_another_study(tmp_path, monkeypatch, capsys, isolated_studies):
    """The issue's case: the same command on two datasets gives two studies, not "exists with other settings";
    the same dataset again resumes the first. Trials are scored by the synthetic evaluator (no training)."""
    from helpers.evaluator import SyntheticEvaluator

    monkeypatch.setattr(run_command, "TrainingEvaluator", lambda ladder, *args, **kwargs: SyntheticEvaluator(ladder))
    roots = [tmp_path / "one" / "train", tmp_path / "two" / "train"]
    for root in roots:
        root.mkdir(parents=True)
    argv = ["run", "--mac-budget", "300M", "--profile", "tiny", "--trials", "1", "--quiet", "--no-dashboard"]
    for root in (*roots, roots[0]):
        assert main([*argv, "--data", str(root)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(default_storage()))
    # the rule: the search problem, then the data folder's name and 6 hex digits of the SHA-256 of its full path
    digests = [hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:6] for root in roots]
    assert names == sorted(f"v2-300M-gp-tiny-s0-train-{d}" for d in digests)
    assert all(f"study {n} in" in out for n in names)
