"""One error family: every exception sensei_xr defines is a SenseiError, defined in errors.py."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import sensei_xr
from sensei_xr.errors import SenseiError

_OPTIONAL = ("sensei_xr.demo",)  # modules needing extras that may be missing


def _modules():
    for info in pkgutil.walk_packages(sensei_xr.__path__, "sensei_xr."):
        try:
            yield importlib.import_module(info.name)
        except ImportError:
            if not info.name.startswith(_OPTIONAL):
                raise


def test_every_library_exception_is_a_sensei_error_from_errors_py():
    found = {}
    for module in _modules():
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__.startswith("sensei_xr"):
                found[f"{module.__name__}.{name}"] = obj
    assert len(found) > 15
    for where, cls in found.items():
        assert issubclass(cls, SenseiError), where
        assert cls.__module__ == "sensei_xr.errors", f"{where} is defined in {cls.__module__}"


def test_one_except_catches_real_failures(shared_data, tmp_path):
    with pytest.raises(SenseiError, match="unknown sensor"):
        sensei_xr.get_sensor("no-such-sensor")
    with pytest.raises(SenseiError):
        sensei_xr.open_scene(tmp_path / "missing_folder")
    with pytest.raises(SenseiError, match="no model named"):
        sensei_xr.load_model("no-such-model")
    # The built-in bases are kept: old `except ValueError` code still works.
    with pytest.raises(ValueError):
        sensei_xr.get_sensor("no-such-sensor")
