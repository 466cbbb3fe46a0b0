"""The example notebooks (examples/*.ipynb) run top to bottom on the real sample data.

Each notebook is executed with nbclient in a fresh kernel of *this* Python (a kernelspec
written to a temporary ``JUPYTER_PATH``, so a user-level ``python3`` kernel pointing at
another interpreter cannot interfere), in a temporary working directory, with
``SENSEI_XR_EXAMPLES_FAST=1`` (the notebooks' CI size) and one OpenMP thread per process
(on two busy cores, torch's default of one thread per core is several times slower). A
failing cell fails its notebook's test with the cell's number, source and traceback.

The repository keeps the notebooks without outputs, and each states what it shows in its
first (markdown) cell; both are checked here too.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("[0-9][0-9]_*.ipynb"))
KERNEL = "sensei-xr-examples"
#: Seconds one cell may run (the slowest cells take well under a minute on two cores).
CELL_TIMEOUT_S = 600


def _need(module: str):
    try:
        return __import__(module)
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {module} is missing: install the 'notebooks' extra")
        pytest.skip(f"{module} not installed (pip install -e '.[notebooks]')")


def _ids(paths):
    return [p.stem for p in paths]


def test_the_six_notebooks_exist():
    assert [p.stem[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"], NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    assert nb["nbformat"] == 4
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_first_cell_states_what_it_shows(path):
    first = json.loads(path.read_text())["cells"][0]
    text = "".join(first["source"])
    assert first["cell_type"] == "markdown", f"{path.name}: the first cell must be markdown"
    assert text.startswith("# "), f"{path.name}: the first cell must start with a title"
    assert "**What this shows:**" in text, f"{path.name}: the first cell must say what it shows"


def test_readme_links_every_notebook():
    readme = (EXAMPLES / "README.md").read_text()
    missing = [p.name for p in NOTEBOOKS if f"({p.name})" not in readme]
    assert not missing, f"examples/README.md does not link {missing}"


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """JUPYTER_PATH with a kernelspec that runs this interpreter, and the CI-size switch."""
    _need("nbclient")
    _need("ipykernel")
    jupyter_dir = tmp_path_factory.mktemp("jupyter")
    spec_dir = jupyter_dir / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python ({sys.executable})",
        "language": "python",
    }))
    changes = {
        "JUPYTER_PATH": os.pathsep.join(filter(None, [str(jupyter_dir), os.environ.get("JUPYTER_PATH")])),
        "SENSEI_XR_EXAMPLES_FAST": "1",
        "OMP_NUM_THREADS": "1",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    }
    saved = {k: os.environ.get(k) for k in changes}
    os.environ.update(changes)
    yield changes
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _failing_cell(nb) -> str:
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return f"cell {i} ({out['ename']}: {out['evalue']})"
    return "a cell"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_runs(path, shared_data, kernel_env, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    monkeypatch.setenv("SENSEI_XR_DATA", str(shared_data))  # the kernel reads the same data
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name=KERNEL,
                            resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError) as e:
        plain = re.sub(r"\x1b\[[0-9;]*m", "", str(e))  # the kernel's traceback is in colour
        pytest.fail(f"{path.name}: {_failing_cell(nb)} failed:\n{plain}", pytrace=False)
    assert not list(tmp_path.iterdir()), f"{path.name} left files in its working directory"
