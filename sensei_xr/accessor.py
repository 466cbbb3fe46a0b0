"""The ``.sensei`` accessor: a thin facade over :mod:`sensei_xr.inference` and
:mod:`sensei_xr.bands`, registered on import of :mod:`sensei_xr`.

``da.sensei.cloudmask()`` is ``sensei_xr.inference.cloudmask(da)``; every keyword is the
function's. The Dataset accessor stacks one-variable-per-band datasets (odc-stac style)
into a DataArray first.
"""

from __future__ import annotations

from typing import Sequence

import rioxarray  # noqa: F401  (registers .rio: outputs carry CRS and transform)
import xarray as xr

from . import bands as _bands
from . import inference as _inference

__all__ = ["SenseiDataArrayAccessor", "SenseiDatasetAccessor", "dataset_to_bands"]


@xr.register_dataarray_accessor("sensei")
class SenseiDataArrayAccessor:
    """Cloud masking for a DataArray with a band dimension (see :mod:`sensei_xr.inference`)."""

    def __init__(self, da: xr.DataArray):
        self._da = da

    def descriptors(self, sensor: str | None = None) -> _bands.BandDescriptors:
        """The bands' wavelengths (nm) and kinds."""
        return _bands.band_descriptors(self._da, sensor=sensor)

    def attach_wavelengths(self, sensor: str) -> xr.DataArray:
        """Attach catalog wavelengths to named bands."""
        return _bands.attach_wavelengths(self._da, sensor)

    def cloudmask(self, model="default", threshold: float = 0.5, **kwargs) -> xr.DataArray:
        """Lazy uint8 mask: 0 clear, 1 cloud, 255 no data."""
        return _inference.cloudmask(self._da, model, threshold=threshold, **kwargs)

    def cloud_probability(self, model="default", **kwargs) -> xr.DataArray:
        """Lazy float32 cloud probability, NaN at no data."""
        return _inference.cloud_probability(self._da, model, **kwargs)

    def classify(self, model="default", threshold: float = 0.5, **kwargs) -> xr.DataArray:
        """Lazy uint8 class ids, 255 at no data; cloud classes exactly where ``cloudmask``
        (same threshold) says cloud."""
        return _inference.classify(self._da, model, threshold=threshold, **kwargs)

    def class_probabilities(self, model="default", **kwargs) -> xr.DataArray:
        """Lazy per-class probabilities."""
        return _inference.class_probabilities(self._da, model, **kwargs)


def dataset_to_bands(ds: xr.Dataset, variables: Sequence[str] | None = None) -> xr.DataArray:
    """Stack a one-variable-per-band Dataset into a DataArray with a ``band`` dimension.

    Variable attributes ``wavelength_*_nm`` / ``center_wavelength`` etc. become band
    coordinates; the Dataset's ``sensor`` attribute is kept.
    """
    usable = [k for k, v in ds.data_vars.items() if v.ndim >= 2 and k != "spatial_ref"]
    if variables is not None:
        if isinstance(variables, str):  # one name, not its letters
            variables = [variables]
        names = list(variables)
        missing = [n for n in names if n not in ds.data_vars]
        if missing:
            raise _bands.BandError(
                f"variables {missing} asked for in variables= are not in the Dataset; its "
                f"data variables with 2 or more dims are {usable}"
            )
        flat = [n for n in names if n not in usable]
        if flat:
            raise _bands.BandError(
                f"variables {flat} have fewer than 2 dims and cannot be bands; use some of {usable}"
            )
    else:
        names = usable
    if not names:
        raise _bands.BandError("the Dataset has no 2-D data variables to use as bands")
    da = ds[names].to_dataarray(dim="band") if hasattr(ds, "to_dataarray") else ds[names].to_array(dim="band")
    coord_keys = (_bands.WAVELENGTH_MIN, _bands.WAVELENGTH_CENTER, _bands.WAVELENGTH_MAX,
                  _bands.BAND_KIND, "center_wavelength", "full_width_half_max")
    for key in coord_keys:
        values = [ds[n].attrs.get(key) for n in names]
        if all(v is not None for v in values):
            da = da.assign_coords({key: ("band", values)})
    da.attrs = dict(ds.attrs)
    try:
        crs = ds.rio.crs
        if crs is not None:
            da = da.rio.write_crs(crs)
    except Exception:
        pass
    return da


@xr.register_dataset_accessor("sensei")
class SenseiDatasetAccessor:
    """Cloud masking for one-variable-per-band Datasets (odc-stac style)."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    def to_bands(self, variables: Sequence[str] | None = None) -> xr.DataArray:
        return dataset_to_bands(self._ds, variables)

    def cloudmask(self, model="default", threshold: float = 0.5, variables=None, **kwargs) -> xr.DataArray:
        return _inference.cloudmask(dataset_to_bands(self._ds, variables), model, threshold=threshold, **kwargs)

    def cloud_probability(self, model="default", variables=None, **kwargs) -> xr.DataArray:
        return _inference.cloud_probability(dataset_to_bands(self._ds, variables), model, **kwargs)

    def classify(self, model="default", threshold: float = 0.5, variables=None, **kwargs) -> xr.DataArray:
        return _inference.classify(dataset_to_bands(self._ds, variables), model, threshold=threshold, **kwargs)
