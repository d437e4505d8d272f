"""Fixtures shared by every test area: the shared collections and a real server on loopback."""

from __future__ import annotations

import os
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
