"""Packaging: environment.yml mirrors pyproject.toml; the wheel carries the catalogs."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names that differ from PyPI's.
CONDA_NAMES = {"torch": "pytorch"}


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _env_entries():
    text = (ROOT / "environment.yml").read_text()
    conda, pip = [], []
    section = None
    for line in text.splitlines():
        stripped = line.split("#")[0].rstrip()
        if not stripped.strip():
            continue
        if stripped.strip() == "- pip:":
            section = "pip"
            continue
        if stripped.startswith("dependencies:"):
            section = "conda"
            continue
        m = re.match(r"^\s*-\s+(.+)$", stripped)
        if m and section:
            (pip if section == "pip" and stripped.startswith("      ") else conda).append(m.group(1).strip())
    return conda, pip


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    conda, pip = _env_entries()
    conda_names = {_name(c) for c in conda}
    pip_names = {_name(p) for p in pip}
    # dask[array,distributed] is dask + distributed on conda-forge.
    conda_names_expanded = conda_names | ({"dask"} if "distributed" in conda_names else set())
    for req in project["dependencies"]:
        name = CONDA_NAMES.get(_name(req), _name(req))
        assert name in conda_names_expanded, f"{req} (pyproject) missing from environment.yml"
        lower = re.search(r">=\s*([\d.]+)", req)
        entry = next(c for c in conda if _name(c) == name)
        if lower:
            assert lower.group(1) in entry, f"{req}: environment.yml has {entry!r}"
    for extra, reqs in project["optional-dependencies"].items():
        for req in reqs:
            assert _name(req) in pip_names | conda_names, f"{extra} extra {req} missing from environment.yml"
    listed = conda_names - {"python", "pip", "distributed"}
    declared = {CONDA_NAMES.get(_name(r), _name(r)) for r in project["dependencies"]}
    assert listed <= declared, f"environment.yml lists {listed - declared} not in pyproject"


def test_no_cuda_only_packages_declared():
    text = (ROOT / "pyproject.toml").read_text().lower()
    for banned in ("torchvision", "timm", "segmentation-models-pytorch", "segmentation_models_pytorch"):
        assert banned not in text


@pytest.mark.slow
def test_wheel_contains_catalogs(tmp_path):
    pytest.importorskip("hatchling", reason="hatchling is the build backend; installed with the package build")
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next(tmp_path.glob("sensei_xr-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {Path(n).name for n in names if n.startswith("sensei_xr/_catalogs/")}
    in_repo = {p.name for p in (ROOT / "catalogs").glob("*.toml")}
    assert in_repo and in_repo <= shipped
