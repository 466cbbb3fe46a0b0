"""Shared fixtures: the real sample data in ../shared/data (or $SENSEI_XR_DATA)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sensei_xr.sample_data import DATA_ENV, data_dir


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = data_dir(required=False)
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and the sample data folder is missing (set {DATA_ENV})")
        pytest.skip(f"sample data not found: set {DATA_ENV} (tests on real data need it)")
    return path
