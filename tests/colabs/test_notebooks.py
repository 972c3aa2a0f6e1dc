"""Every notebook in colabs/ executes top to bottom without errors."""

import glob
import os

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "colabs", "*.ipynb")))
# The robust family's notebook trains and attacks ResNets (~75 s): `make test-slow` runs it; its
# models, attacks and distillation methods are tested fast in tests/robust (CI budget).
SLOW = {"robust.ipynb"}
PARAMS = [
    pytest.param(p, marks=pytest.mark.slow) if os.path.basename(p) in SLOW else p
    for p in NOTEBOOKS
]


@pytest.mark.parametrize("path", PARAMS, ids=os.path.basename)
def test_notebook_runs(path, monkeypatch):
  # The kernel sees one CPU device, as a user's would: not the test session's 8 fake ones
  # (tests/conftest.py), which made every sharded step in the notebooks 8-way on 2 cores.
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_use_fusion_emitters=false")
  nb = nbformat.read(path, as_version=4)
  client = NotebookClient(nb, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": os.path.dirname(path)}})
  client.execute()
  errors = [o for cell in nb.cells if cell.cell_type == "code"
            for o in cell.get("outputs", []) if o.output_type == "error"]
  assert not errors


def test_there_is_a_notebook():
  assert NOTEBOOKS
