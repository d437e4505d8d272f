"""Fixtures for the ui tests: a small synthetic BenchmarkRun (see tests/plots/synthetic_run.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest


def _synthetic():
    name = "llamaeval_tests_synthetic_run"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "plots" / "synthetic_run.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def synthetic():
    """The module: MODES, TOP_K, QUERY_IDS, frames(), make_run()."""
    return _synthetic()


@pytest.fixture()
def run(synthetic):
    """A fresh synthetic run (3 modes x top_k 1,3,5,10 x 6 queries; one failed request)."""
    return synthetic.make_run()


@pytest.fixture(autouse=True)
def _close_pyplot_figures():
    """Figures go through pyplot once something imported it (see plots._new_axes): close them."""
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")
