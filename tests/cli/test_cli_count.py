"""``archsearch count`` and ``archsearch presets``: output, JSON, and one-line errors with exit code 2."""

import json
import subprocess
import sys

import pytest

from archsearch import PRESETS, count, preset
from archsearch.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_count_preset_json(capsys):
    code, out, _ = run_cli(capsys, "count", "--preset", "mobilevitv2_050", "--resolution", "224", "--json")
    assert code == 0
    data = json.loads(out)
    expected = count(preset("mobilevitv2_050").replace(resolution=224), "closed_form")
    assert data["params"] == expected.params
    assert data["macs"] == data["macs_closed_form"] == expected.macs
    assert data["config"]["resolution"] == 224 and data["config"]["width"] == 0.5
    assert [s["name"] for s in data["stages"]][0] == "stem"


def test_count_factors_table(capsys):
    code, out, _ = run_cli(
        capsys, "count", "--family", "v2", "--width", "0.5", "--mv2-depth", "1.0", "--vit-depth", "0.5",
        "--resolution", "192",
    )
    assert code == 0
    assert "v2-r192-w0.5-m1-a0.5-c1000" in out
    assert "equal" in out and "DIFFERENT" not in out
    for stage in ("stem", "layer1", "layer5", "head"):
        assert f"\n{stage} " in out


def test_presets_lists_all(capsys):
    code, out, _ = run_cli(capsys, "presets", "--json")
    rows = json.loads(out)
    assert code == 0 and [r["name"] for r in rows] == list(PRESETS)
    assert all(r["params"] == count(PRESETS[r["name"]], "closed_form").params for r in rows)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["count", "--preset", "nope"], "--preset: unknown 'nope'"),
        (["count", "--family", "v2", "--width", "2.5"], "--width: 2.5 is not in the space (0.25..2 step 0.125)"),
        (["count", "--family", "v2", "--mv2-depth", "3"], "--mv2-depth: 3 is not in the space"),
        (["count", "--family", "v2", "--resolution", "100"], "--resolution: 100 is not a multiple of 32"),
        (["count", "--family", "v2", "--resolution", "352"], "--resolution: 352 is not in the space"),
        (["count", "--family", "v2", "--width", "abc"], "argument --width: invalid float value: 'abc'"),
        (["count", "--family", "v4"], "argument --family: invalid choice"),
        (["count"], "--preset NAME or --family"),
        (["count", "--family", "v2", "--variant", "xs"], "--variant applies to --family v1 only"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv, needle):
    proc = subprocess.run([sys.executable, "-m", "archsearch", *argv], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_explains_every_option():
    proc = subprocess.run([sys.executable, "-m", "archsearch", "count", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for option in ("--preset", "--family", "--width", "--mv2-depth", "--vit-depth", "--resolution", "--json"):
        assert option in proc.stdout
