"""``archsearch count`` and ``archsearch presets``: output, JSON, and one-line errors with exit code 2; the
command line imports only the chosen command's module, and importing the package loads no torch."""

import json
import subprocess
import sys

import pytest

from archsearch import PRESETS, count, preset
from archsearch.cli import COMMANDS, build_parser, main

HEAVY = ("torch", "gpytorch", "optuna", "plotly", "scipy", "sklearn", "onnxruntime", "sqlalchemy")


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


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_help_lists_every_command_and_imports_none_of_them():
    proc = _python(
        "import sys\n"
        "from archsearch.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as exit:\n    assert exit.code == 0\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
        "print(sorted(m for m in sys.modules if m.startswith('archsearch.cli.')), file=sys.stderr)\n"
    )
    assert proc.returncode == 0, proc.stderr
    for name in COMMANDS:
        assert f"    {name} " in proc.stdout or f"    {name}\n" in proc.stdout
    assert proc.stderr.splitlines()[-2:] == ["[]", "['archsearch.cli.common']"]


def test_the_table_agrees_with_every_command_parser():
    for name, (module, help_line) in COMMANDS.items():
        (sub,) = [a for a in build_parser(name)._actions if a.dest == "command"]
        assert [a.help for a in sub._choices_actions if a.dest == name] == [help_line]
        assert sub.choices[name].get_default("handler").__module__ == f"archsearch.cli.{module}"
    assert list(build_parser()._actions[-1].choices) == list(COMMANDS)


def test_unknown_or_missing_command_is_one_line_exit_2():
    for argv, needle in ((["nope"], "invalid choice: 'nope'"), ([], "required: COMMAND")):
        proc = subprocess.run([sys.executable, "-m", "archsearch", *argv], capture_output=True, text=True)
        assert proc.returncode == 2 and proc.stdout == ""
        assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr, proc.stderr


def test_importing_the_package_loads_no_torch_until_a_model_is_built():
    proc = _python(
        "import sys\n"
        "import archsearch.model.config\n"
        "import archsearch\n"
        "assert 'torch' not in sys.modules, 'torch at import'\n"
        "from archsearch.model.generator import build_model\n"
        "assert archsearch.build_model is build_model and 'build_model' in dir(archsearch)\n"
        "from archsearch.model.cost import count\n"
        "assert archsearch.count is count\n"
        "try:\n    archsearch.nope\nexcept AttributeError:\n    pass\nelse:\n    raise AssertionError('nope')\n"
    )
    assert proc.returncode == 0, proc.stderr
