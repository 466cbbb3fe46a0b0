"""Random patch windows over STAC items, read lazily through stackstac (no labels).

For pre-training on unlabelled imagery and for inference-time checks on real scenes.
:class:`StacPatchSampler` stacks each item lazily with :func:`sensei_xr.io.stac.stack_items`
(wavelength coordinates, calibrated reflectance and brightness temperature, the item's own
grid), draws windows as plain descriptions (:class:`StacWindow`: item, pixel window,
bounds, bands) and reads one window at a time as reflectance + :class:`BandDescriptors`.

Unlike the rest of :mod:`sensei_xr.training` this module needs xarray, stackstac and
pystac-client: import it as ``from sensei_xr.training.stac_sampler import StacPatchSampler``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..bands import BandDescriptors, band_descriptors
from ..io import stac
from .samplers import model_input

__all__ = ["StacWindow", "StacPatchSampler"]


@dataclass(frozen=True)
class StacWindow:
    """Where one patch is read from (plain values: picklable, printable, comparable).

    Attributes
    ----------
    index : int
        The patch's index in its sampler.
    item : int
        Index of the item in the sampler's ``items``.
    item_id, collection : str
        The STAC item's id and collection.
    y0, x0, size : int
        Top-left pixel and side of the window in the item's stacked grid (pixels).
    bounds : (float, float, float, float)
        ``(minx, miny, maxx, maxy)`` of the window in ``epsg`` (metres for UTM).
    epsg : int
        CRS of ``bounds``.
    bands : tuple of str
        Asset keys to read, in stack order (e.g. ``("blue", "red", "nir")``).
    """

    index: int
    item: int
    item_id: str
    collection: str
    y0: int
    x0: int
    size: int
    bounds: tuple[float, float, float, float]
    epsg: int
    bands: tuple[str, ...]


def _item_dicts(items: Any) -> list[dict]:
    # A pystac-client ItemSearch: ask for dicts (pystac rewrites proj:epsg, see io.stac).
    if hasattr(items, "items_as_dicts"):
        items = items.items_as_dicts()
    if isinstance(items, Mapping):
        raise TypeError("items must be a sequence of STAC items (or an ItemCollection / ItemSearch), "
                        "not one item: wrap it in a list")
    return [stac._item_dict(it) for it in items]


class StacPatchSampler:
    """Random patches of STAC items, as windows and as lazily read reflectance.

    A map-style dataset: item ``i`` is the patch of :meth:`window` ``(i)``, a pure
    function of ``(seed, i)``, read by :meth:`read`. Use with
    :func:`sensei_xr.training.samplers.make_loader` (``batch_size=None`` unless all items
    share one band set and ``min_bands`` is None).

    Parameters
    ----------
    items : ItemSearch, ItemCollection or sequence of dict / pystac.Item
        The items of a search (e.g. :func:`sensei_xr.io.stac.search` or
        ``pystac_client.Client.search``). Each item is stacked on its own grid, so items
        may differ in CRS and sensor.
    patch_size : int
        Patch side in pixels of the item's stacked grid (its most common native resolution
        unless ``resolution=`` is given).
    patches : int
        Number of patches (the dataset's length).
    seed : int
    min_bands : int, optional
        Give each patch a random subset of at least this many of its item's bands (as
        :class:`~sensei_xr.training.samplers.RandomPatchBatches`); default all bands.
    chunksize : int, optional
        Dask chunk side for the stacks (default ``patch_size``: a window touches at most
        four small chunks instead of reading a large one).
    **stack_kw
        More arguments of :func:`sensei_xr.io.stac.stack_items` (``bands``, ``sensor``,
        ``resolution``, ``wavelengths``, ``api_url``, ...).

    Notes
    -----
    Windows are drawn anywhere in each item's grid (reaching its edges), items in
    proportion to their area. Nothing is read to choose them, so a window can fall on
    no data (NaN); :meth:`__getitem__` reports the valid pixels.
    """

    def __init__(self, items: Any, patch_size: int = 256, patches: int = 1000, seed: int = 0, *,
                 min_bands: int | None = None, chunksize: int | None = None, **stack_kw: Any):
        for bad in ("bounds", "bounds_latlon", "epsg", "calibrate"):
            if bad in stack_kw:
                raise TypeError(f"StacPatchSampler does not take {bad}=: it stacks each item on its own "
                                "grid, calibrated (narrow the search with bbox= instead)")
        self.items = _item_dicts(items)
        if not self.items:
            raise stac.NoItemsError("no STAC items to sample patches from: the search matched nothing")
        if patch_size < 1 or patches < 0:
            raise ValueError(f"patch_size must be >= 1 and patches >= 0, got {patch_size} and {patches}")
        if min_bands is not None and min_bands < 1:
            raise ValueError(f"min_bands must be >= 1 or None (all bands), got {min_bands}")
        self.patch_size = patch_size
        self.patches = patches
        self.seed = seed
        self.min_bands = min_bands
        # One lazy stack per item (time = 1): items of other CRSs or sensors need no common grid.
        self.stacks = [stac.stack_items([it], chunksize=chunksize or patch_size, **stack_kw).isel(time=0)
                       for it in self.items]
        small = [(it["id"], s.sizes["y"], s.sizes["x"]) for it, s in zip(self.items, self.stacks)
                 if min(s.sizes["y"], s.sizes["x"]) < patch_size]
        if small:
            raise ValueError(f"item(s) smaller than the patch size {patch_size}: "
                             f"{', '.join(f'{i} ({h} x {w} px)' for i, h, w in small)}; use a smaller "
                             "patch_size or leave them out of the items")
        areas = np.array([s.sizes["y"] * s.sizes["x"] for s in self.stacks], float)
        self.item_weights = areas / areas.sum()

    def __len__(self) -> int:
        return self.patches

    def window(self, index: int) -> StacWindow:
        """The window of patch ``index`` (reads nothing)."""
        if not 0 <= index < self.patches:
            raise IndexError(f"patch {index} out of range: this sampler has {self.patches} patches")
        rng = np.random.default_rng([self.seed, index])
        k = int(rng.choice(len(self.items), p=self.item_weights))
        da = self.stacks[k]
        p = self.patch_size
        y0 = int(rng.integers(0, da.sizes["y"] - p + 1))
        x0 = int(rng.integers(0, da.sizes["x"] - p + 1))
        names = [str(b) for b in da.band.values.tolist()]
        if self.min_bands is not None and len(names) > self.min_bands:
            n = int(rng.integers(self.min_bands, len(names) + 1))
            names = [names[j] for j in np.sort(rng.choice(len(names), size=n, replace=False))]
        t = da.rio.transform()
        left, top = t * (x0, y0)
        right, bottom = t * (x0 + p, y0 + p)
        bounds = (min(left, right), min(top, bottom), max(left, right), max(top, bottom))
        it = self.items[k]
        return StacWindow(index, k, str(it["id"]), str(it.get("collection")), y0, x0, p,
                          tuple(float(v) for v in bounds), int(da.rio.crs.to_epsg()), tuple(names))

    def lazy(self, window: StacWindow) -> "xarray.DataArray":  # noqa: F821
        """The window as a lazy ``(band, y, x)`` DataArray with wavelength coordinates."""
        if not 0 <= window.item < len(self.items) or self.items[window.item]["id"] != window.item_id:
            raise ValueError(f"window of item {window.item_id!r} (#{window.item}) is not from this "
                             "sampler's items: read windows with the sampler that drew them")
        p = window.size
        return self.stacks[window.item].isel(y=slice(window.y0, window.y0 + p),
                                             x=slice(window.x0, window.x0 + p)).sel(band=list(window.bands))

    def read(self, window: StacWindow) -> tuple[np.ndarray, BandDescriptors]:
        """Read a window: ``(values, descriptors)``.

        Returns
        -------
        values : numpy.ndarray
            (n, size, size) float32: reflectance for reflective bands, brightness
            temperature (K) for thermal bands, NaN at no data.
        descriptors : BandDescriptors
            The n bands (wavelengths in nm).
        """
        da = self.lazy(window)
        # Synchronous: no thread pool per DataLoader worker; the loader gives parallelism.
        values = np.asarray(da.data.compute(scheduler="synchronous"), dtype=np.float32)
        return values, band_descriptors(da)

    def __getitem__(self, index: int) -> dict:
        """Patch ``index`` for the model.

        Returns
        -------
        dict
            ``image`` (n, P, P) float32 model input (thermal BT scaled, no data 0 as in
            every training patch: :func:`~sensei_xr.training.samplers.model_input`),
            ``descriptors`` (n, 3) normalised wavelengths, ``valid`` (P, P) bool (every band
            has data), ``band_names`` (list of str) and ``window`` (the
            :class:`StacWindow` as a dict).
        """
        import torch

        w = self.window(index)
        values, desc = self.read(w)
        return {
            "image": torch.from_numpy(model_input(values, desc)),
            "descriptors": torch.from_numpy(desc.normalised()),
            "valid": torch.from_numpy(np.isfinite(values).all(axis=0)),
            "band_names": list(desc.names),
            "window": asdict(w),
        }

