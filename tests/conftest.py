"""Fixtures shared by every test area: the shared collections and a real server on loopback."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The real test collections in ../shared/datasets (CI has ../shared beside the clone)."""
    path = Path(os.environ.get("LLAMAEVAL_SHARED_DATASETS", PROJECT_ROOT.parent / "shared" / "datasets"))
    if not path.is_dir():
        pytest.skip(f"shared collections not found at {path}")
    return path


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory):
    """A real `llamaeval serve` subprocess on loopback with its own data dir and API key."""
    from llamaeval.server import EmbeddedServer

    data_dir = tmp_path_factory.mktemp("server-data")
    with EmbeddedServer(data_dir=data_dir) as server:
        yield server


@pytest.fixture()
def client(live_server):
    """A sync client bound to the live server."""
    from llamaeval import LlamaCloud

    with LlamaCloud(api_key=live_server.api_key, base_url=live_server.base_url) as lc:
        yield lc


@pytest.fixture(scope="session")
def adi_queryset():
    """The bundled adi collection (82 docs, 35 judged queries)."""
    from llamaeval import load_queryset

    return load_queryset("adi")


@pytest.fixture(scope="session")
def adi_pipeline(live_server, adi_queryset) -> str:
    """Id of a synced pipeline on the live server holding the adi corpus."""
    from llamaeval import LlamaCloud, ingest

    with LlamaCloud(api_key=live_server.api_key, base_url=live_server.base_url) as lc:
        return ingest(lc, adi_queryset, project="tests", pipeline="adi", progress=False)


# --- a small synthetic BenchmarkRun for the plots / widgets / report tests -------------------

def _test_module(name: str, relative: str):
    """A helper module of the tests (``relative`` to tests/), imported once under ``name``."""
    if name not in sys.modules:
        path = Path(__file__).resolve().parent / relative
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _synthetic_module():
    return _test_module("llamaeval_tests_synthetic_run", "plots/synthetic_run.py")


@pytest.fixture(scope="session")
def constructed():
    """The module tests/metrics/_constructed_runs.py: runs of known truth (draw_ranks, make_run, ...)."""
    return _test_module("llamaeval_tests_constructed_runs", "metrics/_constructed_runs.py")


@pytest.fixture(scope="session")
def synthetic():
    """The module tests/plots/synthetic_run.py: MODES, TOP_K, QUERY_IDS, frames(), make_run()."""
    return _synthetic_module()


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
