"""Browser tests of the UI (``make test-ui``): JupyterLab + Chromium, skipped unless asked for
with LLAMAEVAL_UI_TESTS=1 (they re-run every notebook, a few minutes: not in ``make test``)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path(__file__).resolve().parents[2]
#: Screenshots and measurements land here (gitignored); CI keeps them as artefacts.
ARTIFACTS = Path(os.environ.get("LLAMAEVAL_UI_ARTIFACTS", ROOT / "test-artifacts" / "ui"))


def pytest_collection_modifyitems(config, items):
    if os.environ.get("LLAMAEVAL_UI_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="browser UI tests: run `make test-ui` (or set LLAMAEVAL_UI_TESTS=1)")
    for item in items:
        if "tests/ui/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """JupyterLab serving a temp copy of notebooks/ (the repository's files stay untouched)."""
    from _lab import Lab

    home = tmp_path_factory.mktemp("lab")
    root = home / "root"
    shutil.copytree(ROOT / "notebooks", root)
    server = Lab(root, home).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser():
    from _lab import chrome

    driver = chrome()
    yield driver
    driver.quit()
