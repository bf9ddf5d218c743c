"""A family: one study over several MAC budgets -- each network trained once, a verdict at every budget that
a single-budget study with the same jobs would give, proposals spread over the budgets."""

from __future__ import annotations

import copy
import dataclasses

import optuna
import pytest
from helpers.studies import run_synthetic, settings_for
from optuna.trial import create_trial

from archsearch.model.cost import closed_form_cost
from archsearch.report.summary import render, summarize
from archsearch.results.family import family_members, member_name
from archsearch.results.importance import importance_text
from archsearch.results.judge import study_facts
from archsearch.search import Ledger
from archsearch.search.budget import BudgetError, parse_budgets
from archsearch.search.session import Session
from archsearch.search.settings import StudyError, StudySettings
from archsearch.search.study import make_storage

BUDGETS = (100_000_000, 150_000_000, 300_000_000)


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    """A deciding family study of three budgets on the synthetic surface, noise at every rung."""
    from helpers.evaluator import SyntheticEvaluator

    tmp = tmp_path_factory.mktemp("family")
    settings = settings_for(trials=9, rungs=("smoke", "short"), finalists=2, repeats=1, budgets=BUDGETS)
    evaluator = SyntheticEvaluator(settings.fidelity_ladder(), noise=0.01)
    study, url, plan, _ = run_synthetic(tmp, settings, evaluator)
    return study, url, plan, evaluator, settings


def test_budget_lists_parse_cheapest_first_and_refuse_repeats():
    assert parse_budgets("300M,75M,150M") == (75_000_000, 150_000_000, 300_000_000)
    assert parse_budgets("300M") == (300_000_000,)
    for bad, needle in (("300M,300M", "300M given twice"), ("0,100M", "not a positive number"),
                        ("100M,abc", "cannot read 'abc'"), ("100M,,200M", "empty entry")):
        with pytest.raises(BudgetError, match=needle):
            parse_budgets(bad)


def test_every_network_is_trained_once_and_serves_every_budget_it_fits(family):
    study, url, plan, evaluator, settings = family
    trained = [(c, r, s) for c, r, s in evaluator.calls]
    assert len(trained) == len(set(trained))  # no job twice
    keys = [e.job.key for e in Ledger(study.get_trials()).entries if e.state == "done"]
    assert len(keys) == len(set(keys))
    facts = study_facts(study, url)
    assert [b for b, _ in facts.verdicts] == list(BUDGETS)
    top = plan.ladder.top
    deciding = {n.config.network_key(): n.macs
                for n in facts.ledger.networks(top, plan.ladder.rungs[top].name).values()}
    assert any(m <= BUDGETS[0] for m in deciding.values()) and any(m > BUDGETS[1] for m in deciding.values())
    for budget, decision in facts.verdicts:
        assert decision.winner is not None and decision.winner.macs <= budget and decision.p_best
        # every deciding network within the budget is a candidate, whichever budget it was trained for
        assert {n.config.network_key() for n in decision.ranked} == {k for k, m in deciding.items() if m <= budget}
        for m in decision.margins:  # each budget's own baselines, brought to it
            if m.baseline is not None:
                assert 0.9 * budget <= m.baseline.macs <= budget or m.kind == "width_resolution"


def test_proposals_are_spread_over_the_budgets(family):
    study, _, _, _, _ = family
    ledger = Ledger(study.get_trials())
    macs = {e.job.config.network_key(): e.macs for e in ledger.entries}
    proposed = [macs[k] for k in ledger.search_networks(0)]
    assert len(proposed) == 9
    # the design takes the budgets in turn, cheapest first, each from the upper half of its budget
    for budget, cost in zip(BUDGETS, proposed[:3]):
        assert budget / 2 <= cost <= budget
    for low, high in zip((0,) + BUDGETS[:-1], BUDGETS):  # every band holds screened networks
        assert any(low < m <= high for m in proposed)


def test_each_verdict_is_what_a_single_budget_study_with_the_same_jobs_decides(family, tmp_path):
    study, url, _, _, settings = family
    facts = study_facts(study, url)
    storage = make_storage(f"sqlite:///{tmp_path}/single.db")
    for budget, decision in facts.verdicts:
        single = StudySettings.from_dict({**settings.to_dict(), "mac_budget": budget, "mac_budgets": None})
        copy = Session(single, f"single-{budget}", storage).study
        for t in study.get_trials():
            copy.add_trial(create_trial(state=t.state, value=t.value, params=t.params, distributions=t.distributions,
                                        user_attrs=t.user_attrs))
        alone = study_facts(copy).decision
        assert alone.winner.config == decision.winner.config
        assert alone.p_best == pytest.approx(decision.p_best)
        assert [(m.kind, m.margin, m.interval) for m in alone.margins] == \
            [(m.kind, m.margin, m.interval) for m in decision.margins]


def test_the_summary_gives_a_verdict_and_a_member_per_budget(family):
    study, url, _, _, _ = family
    facts = study_facts(study, url)
    members = family_members(facts)
    assert [m.budget for m in members] == list(BUDGETS)
    assert [m.name for m in members] == ["archsearch_v2_100m", "archsearch_v2_150m", "archsearch_v2_300m"]
    for member, (_, decision) in zip(members, facts.verdicts):
        assert member.config == decision.winner.config and member.top1 == decision.winner.mean
        assert member.params == closed_form_cost(member.config).params
    summary = summarize(study, url, facts)
    assert [v["budget"] for v in summary["family"]["verdicts"]] == list(BUDGETS)
    assert summary["winner"]["config_id"] == members[-1].config.id  # the top-level verdict: the largest budget
    text = render(summary)
    for budget in ("100M", "150M", "300M"):
        assert f"==== budget {budget} MACs ====" in text
    assert "the family (each budget's winner):" in text and "archsearch_v2_150m" in text
    assert importance_text(summary["importance"]) not in text  # the largest budget's: under "at each budget" only


def test_a_family_resumes_only_with_the_same_budgets(family, tmp_path):
    _, _, _, _, settings = family
    storage = make_storage(f"sqlite:///{tmp_path}/resume.db")
    Session(settings, "fam", storage).study
    assert StudySettings.from_study(optuna.load_study(study_name="fam", storage=storage)).budgets == BUDGETS
    other = StudySettings.from_dict({**settings.to_dict(), "mac_budgets": BUDGETS[1:]})
    with pytest.raises(StudyError, match="mac_budgets"):
        Session(other, "fam", storage).study


def test_a_budget_whose_networks_are_all_screened_gives_way_to_the_next(tmp_path):
    """Seen on Imagenette (--latency-budget 4ms,8ms, 12-06): the 4 ms member's band held 27 networks, the plan
    60 proposals taken in turn, and the run died with a traceback when its turn found none left. At 30M the
    space holds 2 networks: the proposals go on within 300M, and each network is screened once."""
    from helpers.evaluator import SyntheticEvaluator

    budgets = (30_000_000, 300_000_000)
    settings = settings_for(trials=8, rungs=("smoke",), promote=1.0, budgets=budgets)
    study, _, _, _ = run_synthetic(tmp_path, settings, SyntheticEvaluator(settings.fidelity_ladder(), noise=0.01))
    ledger = Ledger(study.get_trials())
    proposed = ledger.search_networks(0)
    costs = [closed_form_cost(c).macs for c in proposed.values()]
    assert len(proposed) == 8 and all(m <= budgets[1] for m in costs)
    assert sum(m <= budgets[0] for m in costs) <= 2 < sum(m > budgets[0] for m in costs)
    assert len(ledger.taken()) == len(ledger.entries)  # nothing trained twice


def test_member_names_are_registry_names():
    assert member_name("v2", 75_000_000) == "archsearch_v2_75m"
    assert member_name("v1", 1_200_000_000) == "archsearch_v1_1200m"


def test_the_law_is_checked_at_a_held_out_budget_and_its_network_trained_once(tmp_path, monkeypatch):
    """Four budgets: the law fitted without 150M, from the deciding rung, predicts a network there, which is
    trained at the deciding rung (role "law") at the top seeds and compared with the search's own best and the
    baselines; a second check trains nothing. 12 proposals are thin evidence, so the law declines: ``run``'s
    check says so in one line and trains nothing, ``formula --validate`` (``declined_ok``) checks the declined
    law's median as asked, and with the threshold lifted the law stands and its own prediction is checked."""
    from helpers.evaluator import SyntheticEvaluator

    import archsearch.results.formula as formula_module
    import archsearch.results.law as law_module
    from archsearch.cli.common import CLIError
    from archsearch.cli.formula import validate_budget
    from archsearch.results.holdout import LAW, check_lines

    class Interrupted(SyntheticEvaluator):
        """Ctrl-C in the first law job it trains."""

        interrupted = False

        def __call__(self, job):
            if job.role == LAW and not self.interrupted:
                self.interrupted = True
                raise KeyboardInterrupt
            return super().__call__(job)

    monkeypatch.setenv("ARCHSEARCH_SHUFFLES", "0")
    budgets = (75_000_000, 150_000_000, 300_000_000, 600_000_000)
    settings = settings_for(trials=12, rungs=("smoke", "short"), finalists=1, budgets=budgets)
    evaluator = Interrupted(settings.fidelity_ladder(), noise=0.005)
    study, url, _, _ = run_synthetic(tmp_path, settings, evaluator)
    top = settings.fidelity_ladder().top
    before = len(evaluator.calls)
    with pytest.raises(CLIError, match="--validate: without 150M, no scaling formula: the evidence is too thin"):
        validate_budget(study, url, study_facts(study, url), 150_000_000, evaluator, progress=False)
    assert len(evaluator.calls) == before
    with pytest.raises(KeyboardInterrupt):
        validate_budget(study, url, study_facts(study, url), 150_000_000, evaluator, progress=False,
                        declined_ok=True)
    # run again, the check trains the job the interruption queued again (and nothing else)
    check = validate_budget(study, url, study_facts(study, url), 150_000_000, evaluator, progress=False,
                            declined_ok=True)
    assert check.law_declined and check.trained is not None
    assert check.predicted.network_key() == check.trained.config.network_key()
    assert closed_form_cost(check.predicted).macs <= 150_000_000
    assert check_lines(check.to_dict())[0].startswith("the law fitted without 150M was declined; its median")
    law_jobs = Ledger(study.get_trials()).at(top, role=LAW)
    assert len(evaluator.calls) - before == len(law_jobs) <= 1  # one top seed; none if the search had trained it
    kinds = {c.against for c in check.comparisons}
    assert "width" in kinds and "compound" in kinds
    for c in check.comparisons:
        assert c.interval[0] <= c.margin <= c.interval[1]
    again = validate_budget(study, url, study_facts(study, url), 150_000_000, evaluator, progress=False,
                            declined_ok=True)
    assert again.predicted == check.predicted and len(evaluator.calls) - before == len(law_jobs)
    for module in (formula_module, law_module):
        monkeypatch.setattr(module, "MAX_RELATIVE_WIDTH", 10.0)
    stands = validate_budget(study, url, study_facts(study, url), 150_000_000, evaluator, progress=False)
    assert not stands.law_declined and stands.trained is not None
    assert check_lines(stands.to_dict())[0].startswith("the law fitted without 150M predicts")
    assert len(evaluator.calls) - before == len(Ledger(study.get_trials()).at(top, role=LAW)) <= 2
    summary = summarize(study, url)
    assert [c["budget"] for c in summary["family"]["checks"]] == [150_000_000]
    assert summary["formula"]["source"].startswith("posterior draws of the deciding rung")


def test_export_family_writes_every_member_once(family, tmp_path, capsys):
    """``export --family``: the timm module registers each budget's winner by name, cvnets one config each;
    a single-budget study or another format is refused in one line."""
    from archsearch.cli import main

    study, url, _, _, _ = family
    members = family_members(study_facts(study, url))
    assert main(["export", "--study", study.study_name, "--storage", url, "--family", "--format", "timm",
                 "--out", str(tmp_path / "timm")]) == 0
    source = next((tmp_path / "timm").glob("timm_family_*.py")).read_text()
    for m in members:
        assert f"def {m.name}(" in source and m.config.id in source
    assert main(["export", "--study", study.study_name, "--storage", url, "--family", "--format", "cvnets",
                 "--out", str(tmp_path / "cv")]) == 0
    assert sorted(p.stem for p in (tmp_path / "cv" / "cvnets").glob("*.yaml")) == sorted(m.name for m in members)
    capsys.readouterr()
    assert main(["export", "--study", study.study_name, "--storage", url, "--family", "--format", "onnx"]) == 2
    assert capsys.readouterr().err.strip().endswith("--family: with --format timm or cvnets (and no --trial)")
    single, single_url, _, _ = run_synthetic(tmp_path, settings_for(trials=2), family[3], name="one")
    assert main(["export", "--study", "one", "--storage", single_url, "--family", "--format", "timm"]) == 2
    assert "has one budget (300M)" in capsys.readouterr().err


@pytest.fixture(scope="module")
def family_view(family):
    """The family study's facts and dashboard view (the dashboard tests only read them)."""
    from archsearch.report.dashboard import collect

    study, url, _, _, _ = family
    facts = study_facts(study, url)
    return facts, collect(study, url, facts)


def test_the_dashboard_shows_the_family_against_macs(family_view):
    """The family section: the searched, width and compound families at each budget's verdict, the winner's
    factors by budget, and an importance per budget."""
    from archsearch.report.dashboard import build_figures

    facts, view = family_view
    fig = build_figures(view)["family"]
    traces = {t.name: t for t in fig.data if t.name}
    members = family_members(facts)
    assert list(traces["searched family"].x) == [m.macs / 1e6 for m in members]
    assert list(traces["searched family"].y) == pytest.approx([100 * m.top1 for m in members])
    widths = [next(m.baseline for m in d.margins if m.kind == "width") for _, d in facts.verdicts]
    assert list(traces["width family"].x) == [w.macs / 1e6 for w in widths]
    assert all(e > 0 for e in traces["width family"].error_y.array)
    resolution = next(t for t in fig.data if t.name == "resolution (px)")
    assert list(resolution.y) == pytest.approx([m.config.resolution / members[-1].config.resolution
                                                for m in members])
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(bars) == 4 and all(list(b.x) == ["100M", "150M", "300M"] for b in bars)
    assert set(view.family["importance"]) == {str(b) for b in BUDGETS}
    assert view.formula["declined"] and not any(f["carried"] for f in view.formula["fitted"]["factors"].values())
    assert not [t for t in fig.data if (t.hovertemplate or "").startswith("law: MACs^")]  # no law, no line


def test_the_dashboard_draws_the_factors_a_declined_law_carries_alone(family_view):
    """A declined law's line for each factor it carries alone (here one marked carried), and for no other."""
    from archsearch.report.dashboard import build_figures

    _, view = family_view
    formula = copy.deepcopy(view.formula)
    formula["fitted"]["factors"]["vit_depth"]["carried"] = True
    fig = build_figures(dataclasses.replace(view, formula=formula))["family"]
    lines = [t for t in fig.data if (t.hovertemplate or "").startswith("law: MACs^")]
    assert [t.legendgroup for t in lines] == ["vit_depth"]


def test_a_family_interrupted_and_resumed_trains_nothing_twice_and_ends_as_one_run(family, tmp_path):
    """Stopped after 7 jobs and resumed by another process (a new session on the same storage, as a worker or a
    re-run is): the jobs and the verdicts are those of the uninterrupted run."""
    from helpers.evaluator import SyntheticEvaluator

    study, url, _, _, settings = family
    evaluator = SyntheticEvaluator(settings.fidelity_ladder(), noise=0.01)
    run_synthetic(tmp_path, settings, evaluator, name="again", max_trials=7)
    resumed, resumed_url, _, _ = run_synthetic(tmp_path, settings, evaluator, name="again")
    assert len(evaluator.calls) == len(set(evaluator.calls))
    keys = [e.job.key for e in Ledger(resumed.get_trials()).entries if e.state == "done"]
    assert len(keys) == len(set(keys))
    assert set(keys) == {e.job.key for e in Ledger(study.get_trials()).entries if e.state == "done"}
    assert [d.winner.config for _, d in study_facts(resumed, resumed_url).verdicts] == \
        [d.winner.config for _, d in study_facts(study, url).verdicts]


@pytest.mark.parametrize("args, needle", [
    (["--validate", "200M"], "--validate: 200M is not a budget of study"),
    (["--validate", "150M"], "--validate: leaving one budget out needs a family of 4 budgets or more"),
    (["--validate", "150M", "--mac-budget", "150M"], "--mac-budget or --validate: give one"),
    ([], "--mac-budget or --validate: give one"),
])
def test_formula_validate_refuses_bad_input_in_one_line(family, capsys, args, needle):
    from archsearch.cli import main

    study, url, _, _, _ = family
    assert main(["formula", "--study", study.study_name, "--storage", url, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
