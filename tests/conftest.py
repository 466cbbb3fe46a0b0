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


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's torch work on one thread, restoring the setting afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Print the random test order's seed even under ``-q`` (which hides pytest-randomly's
    header), so an order-dependent failure in CI can be replayed with ``-p randomly
    --randomly-seed=<seed>``."""
    seed = getattr(config.option, "randomly_seed", None)
    if seed is not None:
        terminalreporter.write_line(f"test order: pytest-randomly seed {seed} (replay with -p randomly "
                                    f"--randomly-seed={seed})")
