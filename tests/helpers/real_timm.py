"""Test helper: real timm for the timm export tests, and the constants of a generated module.

timm is installed with ``pip --no-deps`` into ``.cache/`` (timm declares torchvision as a dependency, which
archsearch must not pull in) and run in a subprocess: timm imports torchvision at import time for data transforms
and FrozenBatchNorm2d, which ByobNet never uses, so the subprocess first runs ``TORCHVISION_STANDIN``, an inert
torchvision, when the real one is absent. Without the registry the tests are skipped, saying so.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TIMM_VERSION = "1.0.31"
TORCHVISION_STANDIN = '''
import importlib.abc, importlib.machinery, importlib.util, sys, types

class _Meta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        child = _Meta(name, (_Placeholder,), {})
        setattr(cls, name, child)
        return child

class _Placeholder(metaclass=_Meta):
    def __init__(self, *args, **kwargs):
        raise RuntimeError("torchvision stand-in: not usable")

class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []
        def attr(name):
            if name.startswith("__"):
                raise AttributeError(name)
            value = _Meta(name, (_Placeholder,), {})
            setattr(module, name, value)
            return value
        module.__getattr__ = attr
        return module
    def exec_module(self, module):
        pass

if importlib.util.find_spec("torchvision") is None:
    sys.meta_path.append(_Finder())
'''


def install_timm() -> Path | None:
    """timm installed with --no-deps into .cache/ (reused across runs), or None where timm is importable
    already; skips the test when it cannot be had."""
    if importlib.util.find_spec("timm") is not None:
        return None
    target = REPO / ".cache" / f"test-timm-{TIMM_VERSION}"
    if not (target / "timm" / "__init__.py").exists():
        staging = target.with_name(target.name + f".tmp{os.getpid()}")
        try:
            done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile",
                                   "--disable-pip-version-check", "--target", str(staging), f"timm=={TIMM_VERSION}"],
                                  capture_output=True, text=True, timeout=240, check=False)
        except subprocess.TimeoutExpired:
            shutil.rmtree(staging, ignore_errors=True)
            pytest.skip(f"pip could not install timm=={TIMM_VERSION} within 240 s (registry unreachable?)")
        if done.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            pytest.skip(f"pip could not install timm=={TIMM_VERSION} --no-deps: {tail}")
        try:
            staging.rename(target)
        except OSError:  # another pytest worker installed it first
            if not (target / "timm" / "__init__.py").exists():
                raise
            shutil.rmtree(staging, ignore_errors=True)
    return target


def timm_env(timm_dir: Path | None) -> dict[str, str]:
    """The environment for a subprocess that imports timm from ``timm_dir``."""
    path = os.pathsep.join(filter(None, [str(timm_dir or ""), os.environ.get("PYTHONPATH", "")]))
    return {**os.environ, "PYTHONPATH": path}


def module_constants(source: str) -> dict:
    """The upper-case module-level constants of a generated Python file, read without running it."""
    tree = ast.parse(source)
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id.isupper()}
