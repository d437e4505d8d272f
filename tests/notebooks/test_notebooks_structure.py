"""Static checks of the shipped notebooks (nbval executes them: `pytest notebooks --nbval-lax`)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_the_four_notebooks_are_there():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_valid_self_contained_and_cleans_up(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    sources = "\n".join(c.source for c in code)
    # runs against its own embedded server on the small adi collection, and stops it
    assert "le.EmbeddedServer()" in sources and 'load_queryset("adi")' in sources
    assert code[-1].source.strip().endswith("server.stop()")
    # nbval-lax compares only the marked cells: there must be some, and stored outputs must be clean
    assert any("# NBVAL_CHECK_OUTPUT" in c.source for c in code)
    for cell in code:
        for out in cell.get("outputs", []):
            assert out.output_type != "error", f"{path.name}: stored error output"
            assert "Traceback" not in out.get("text", "")
    # nothing is written into the repository: reports and runs go to temp dirs
    assert "tempfile" in sources or "save(" not in sources
