"""The package as a user gets it: a wheel built from the source tree, installed into a fresh virtual environment,
run from an unrelated directory (issue 14, item 1).

Torch and the other dependencies come from the interpreter running the tests, wherever it keeps them (no
download, no CUDA build): once the wheel is installed, a ``.pth`` file adds that interpreter's site directories
to the environment. ``--system-site-packages`` would reach only the base interpreter's, which inside a virtual
environment has no torch. archsearch itself comes only from the wheel: the test checks that the imported
package is the environment's, not the source tree or the editable install.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers.imagefolder import make_image_folder

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _site_dirs() -> list[str]:
    """Where this interpreter finds its packages: the user's site directory (when enabled), then its
    site-packages (a virtual environment's, and the base's when it includes them)."""
    user = [site.getusersitepackages()] if site.ENABLE_USER_SITE else []
    return [path for path in [*user, *site.getsitepackages()] if Path(path).is_dir()]


def _run(cmd: list, cwd: Path, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python of a fresh venv with the wheel installed, a clean environment for it)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"  # a copy, so that the build leaves nothing in the repository
    shutil.copytree(REPO / "archsearch", source / "archsearch", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    # Nothing of the source tree's (PYTHONPATH) and no archsearch setting but the test's own worker registry.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ARCHSEARCH_", "PYTHON")) or k == "ARCHSEARCH_WORKERS_DIR"}
    env |= {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1", "OMP_NUM_THREADS": "1"}
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", root / "dist",
          source], root, env)
    (wheel,) = (root / "dist").glob("archsearch-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        spaces = {f"archsearch/model/spaces/mobilevit_{family}.toml" for family in ("v1", "v2")}
        assert spaces <= set(archive.namelist())
    _run([sys.executable, "-m", "venv", root / "venv"], root, env)
    python = root / "venv" / "bin" / "python"
    _run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", wheel], root, env)
    # after the install: pip sees only the environment (not the editable install among this interpreter's)
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root, env)
    (Path(purelib.stdout.strip()) / "outer-site.pth").write_text("".join(f"{path}\n" for path in _site_dirs()))
    env["PATH"] = f"{root / 'venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["ARCHSEARCH_CACHE"] = str(root / "cache")
    return python, env


@pytest.fixture
def workdir(tmp_path):
    """An empty directory (tmp_path itself holds the studies/ folder of the conftest's isolation)."""
    path = tmp_path / "work"
    path.mkdir()
    return path


def test_count_from_an_unrelated_directory(installed, workdir):
    python, env = installed
    where = _run([python, "-c", "import archsearch; print(archsearch.__file__)"], workdir, env).stdout.strip()
    assert Path(where).is_relative_to(python.parent.parent), where  # the wheel's copy, not /work/...
    count = _run(["archsearch", "count", "--preset", "mobilevitv2_050", "--json"], workdir, env)
    assert json.loads(count.stdout)["params"] == 1_370_593
    v1 = _run(["archsearch", "count", "--family", "v1", "--width", "0.75", "--resolution", "192"], workdir, env)
    assert "equal" in v1.stdout  # the v1 space (package data too) accepted the factors
    assert not list(workdir.iterdir())  # count writes nothing


def test_tiny_run_writes_under_the_current_directory(installed, workdir):
    """Default data from ``shared/datasets/imagenette2-224`` under the CWD; studies/ and dashboards/ there too."""
    python, env = installed
    make_image_folder(workdir / "shared" / "datasets" / "imagenette2-224")
    done = _run(["archsearch", "run", "--mac-budget", "300M", "--profile", "tiny", "--trials", "1", "--quiet"],
                workdir, env)
    assert "winner:" in done.stdout, done.stdout
    (summary,) = (workdir / "studies").glob("*/summary.json")
    name = summary.parent.name
    assert name.startswith("v2-300M-gp-tiny-s0-imagenette2-224-")
    facts = json.loads(summary.read_text())
    records = [r for rung in facts["rungs"] for r in rung]
    assert [r["role"] for r in records].count("search") == 1  # the one trial asked for; the rest are baselines
    assert facts["counts"]["trained"] == len(records) and len(facts["baselines"]) == 3
    assert (workdir / "studies" / "archsearch.db").is_file()
    assert (workdir / "dashboards" / f"{name}.html").stat().st_size > 100_000
    installed_package = python.parent.parent / "lib"
    assert not list(installed_package.rglob("studies")) and not list(installed_package.rglob("dashboards"))
