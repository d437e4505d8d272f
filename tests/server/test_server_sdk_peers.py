"""Peer tests: the official LlamaCloud SDKs, unchanged, against the server's real-LlamaCloud dialect at ``/cloud``.

Each SDK runs in its own interpreter (they cannot share a venv: llama-cloud 2.x, 1.6 and 0.1.x are the same
distribution) and walks a realistic flow (tests/server/peers/flow_*.py): find the Default project, create/upsert a
pipeline, upload files, add them with custom metadata, wait for ingestion, list files, retrieve with real parameters
(hybrid alpha, top_k, reranking, metadata filters, files_via_content), documents, sync, jobs, deletes.

* Stainless llama-cloud 2.x (strict response validation): this test's own interpreter (a dev dependency).
* Fern llama-cloud 0.1.46 and LlamaIndex's LlamaCloudIndex (llama-cloud 1.6): ``.venv-peers/{fern,llamaindex}``,
  created by ``make peers``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pytest

from llamaeval.server import EmbeddedServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]
PEERS = Path(__file__).resolve().parent / "peers"
PEER_VENVS = REPO / ".venv-peers"
N_DOCS = 6
FLOW_TIMEOUT = 900  # seconds for one whole flow (the pytest timeout above is 1200)


def _missing(what: str, command: str) -> None:
    msg = f"{what} is missing; create it with:  {command}"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def _peer_python(name: str) -> Path:
    python = PEER_VENVS / name / "bin" / "python"
    if not python.exists():
        _missing(f"peer venv {python.parent.parent}", f"make -C {REPO} peers")
    return python


@pytest.fixture(scope="module")
def cloud_server():
    with EmbeddedServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def peer_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A handful of real adi documents as .txt files, plus metadata.json {file: {doc_id, topic}} (two topics)."""
    import llamaeval as le

    corpus = le.load_queryset("adi").corpus.head(N_DOCS)
    out = tmp_path_factory.mktemp("peer-data")
    meta: dict[str, dict[str, str]] = {}
    for i, row in enumerate(corpus.itertuples(index=False)):
        name = f"adi-{int(row.doc_id):03d}.txt"
        (out / name).write_text(f"{row.title}\n\n{row.text}\n", "utf-8")
        meta[name] = {"doc_id": str(row.doc_id), "topic": "alpha" if i % 2 == 0 else "beta"}
    (out / "metadata.json").write_text(json.dumps(meta, indent=1), "utf-8")
    return out


def _run_flow(python: Path | str, script: str, srv: EmbeddedServer, data: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLAMA_CLOUD_", "LLAMA_PARSE_"))}
    if str(python) != sys.executable:  # a peer venv must see only its own packages
        for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
            env.pop(var, None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    cmd = [str(python), str(PEERS / script), "--base-url", srv.base_url + "/cloud", "--api-key", str(srv.api_key),
           "--data-dir", str(data)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=FLOW_TIMEOUT, env=env, cwd=str(data))
    lines = proc.stdout.strip().splitlines()
    try:
        report: dict[str, Any] = json.loads(lines[-1])
        steps = report["steps"]
    except (IndexError, ValueError, KeyError, TypeError):
        pytest.fail(f"{script} did not print its JSON report (exit {proc.returncode})\n"
                    f"stdout tail:\n{proc.stdout[-3000:]}\nstderr tail:\n{proc.stderr[-5000:]}")
    failed = [s for s in steps if not s["ok"]]
    if failed or proc.returncode != 0:
        msg = [f"{script} ({report.get('sdk')}): {len(failed)} of {len(steps)} steps failed (exit {proc.returncode})"]
        msg += [f"- {s['name']}:\n    " + str(s["error"]).replace("\n", "\n    ") for s in failed]
        pytest.fail("\n".join(msg), pytrace=False)


def test_stainless_sdk_flow(cloud_server: EmbeddedServer, peer_data: Path) -> None:
    """llama-cloud 2.x (Stainless, `_strict_response_validation=True`) in this interpreter."""
    try:
        v = version("llama-cloud")
    except PackageNotFoundError:
        v = None
    if v is None or int(v.split(".")[0]) < 2:
        _missing(f"llama-cloud >= 2 in {sys.executable} (found {v})",
                 f"{sys.executable} -m pip install 'llama-cloud==2.19.0'")
    _run_flow(sys.executable, "flow_stainless.py", cloud_server, peer_data)


def test_fern_sdk_flow(cloud_server: EmbeddedServer, peer_data: Path) -> None:
    """llama-cloud 0.1.46 (Fern, `llama_cloud.client.LlamaCloud`)."""
    _run_flow(_peer_python("fern"), "flow_fern.py", cloud_server, peer_data)


def test_llamaindex_flow(cloud_server: EmbeddedServer, peer_data: Path) -> None:
    """LlamaIndex `LlamaCloudIndex` / `LlamaCloudRetriever` (llama-index-indices-managed-llama-cloud 0.12,
    on llama-cloud 1.6)."""
    _run_flow(_peer_python("llamaindex"), "flow_llamaindex.py", cloud_server, peer_data)


def test_stainless_1x_flow_in_llamaindex_venv(cloud_server: EmbeddedServer, peer_data: Path) -> None:
    """The same Stainless flow on llama-cloud 1.6 (what LlamaCloudIndex uses), non-strict."""
    _run_flow(_peer_python("llamaindex"), "flow_stainless.py", cloud_server, peer_data)
