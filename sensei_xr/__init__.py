"""sensei_xr: sensor-independent cloud masks for multispectral imagery on xarray and Dask.

The data path: sensor catalogs and band wavelengths (:mod:`sensei_xr.catalogs`,
:mod:`sensei_xr.bands`) -> reading scenes (:mod:`sensei_xr.io`, :mod:`sensei_xr.radiometry`)
-> models (:mod:`sensei_xr.models`) -> inference -> the ``.sensei`` accessor and the CLI.
"""

from . import catalogs
from .bands import BandDescriptors, attach_wavelengths, band_descriptors
from .catalogs import get_sensor, list_sensors
from .errors import BandError, SceneError, SenseiError
from .io import open_scene

try:  # the accessor needs xarray; the model and training core do not
    from . import accessor as _accessor  # noqa: F401  (registers .sensei)
except ImportError:  # pragma: no cover - e.g. a bare GPU training machine
    pass

__version__ = "0.1.0"


def __getattr__(name: str):
    # The models need torch: imported on first use, so `import sensei_xr` stays light.
    if name in ("load_model", "list_models"):
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module 'sensei_xr' has no attribute {name!r}")


__all__ = [
    "__version__",
    "catalogs",
    "get_sensor",
    "list_sensors",
    "BandDescriptors",
    "BandError",
    "attach_wavelengths",
    "band_descriptors",
    "open_scene",
    "SceneError",
    "SenseiError",
    "load_model",
    "list_models",
]
