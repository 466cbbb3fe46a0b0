"""Peer cloud masks, run on the same pixels as our model for comparison (optional extra).

Two published methods whose models ship inside their wheels, so they run offline:

* ``s2cloudless`` (Sentinel Hub; LightGBM on single pixels): needs the 10 Sentinel-2 L1C
  bands B01, B02, B04, B05, B08, B8A, B09, B10, B11, B12 as TOA reflectance. Its
  classifier was trained on Sentinel-2 only; here each of those bands is matched by
  wavelength (an input band centred inside the Sentinel-2 band), so in practice only
  Sentinel-2 input qualifies: Landsat has no red-edge (B05, 705 nm) or water-vapour (B09,
  945 nm) band.
* ``ukis-csmask`` (DLR; U-Net with an EfficientNet-B4 encoder, ONNX): blue, green, red,
  NIR and, for its better 6-band model, SWIR 1.6 and 2.2 um, as reflectance, for
  Sentinel-2 and Landsat 5-9 (trained on SPARCS and CloudSEN12+, not on Landsat 8 Biome).
  ``ukis-csmask`` uses the 6-band model where the bands are there, else the 4-band one;
  ``ukis-csmask-4b`` always the 4-band one (blue, green, red, NIR).

Install both with ``pip install "sensei_xr[peers]"`` (LightGBM, OpenCV headless,
onnxruntime; neither pulls torch or TensorFlow). Each wrapper takes a bands-first
reflectance array and its :class:`~sensei_xr.bands.BandDescriptors`, picks the bands the
peer needs by wavelength and returns a boolean (H, W) cloud mask decided by the peer's
own default rule.
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass

import numpy as np

from ..bands import BandDescriptors, check_band_values
from ..errors import MissingBandError
from ..spectral.bandsets import REGIONS, region_band

__all__ = ["Peer", "S2Cloudless", "UkisCsmask", "PEERS", "get_peer", "list_peers"]

_INSTALL_HINT = 'pip install "sensei_xr[peers]"'


class Peer:
    """A peer method: the bands it needs and its cloud mask.

    Attributes
    ----------
    name : str
        Name used by :func:`get_peer` and the CLI's ``--peers``.
    package : str
        The module it imports.
    """

    name: str = ""
    package: str = ""

    def unavailable(self) -> str | None:
        """Why the peer cannot run here, or None when it can."""
        try:
            importlib.import_module(self.package)
        except ImportError as e:  # not installed, or a native library it needs is missing
            return f"{self.package} cannot be imported ({e}); install it with {_INSTALL_HINT}"
        return None

    def bands(self, descriptors: BandDescriptors) -> list[str]:
        """Names of the input bands the peer uses, in the order it takes them.

        Raises
        ------
        MissingBandError
            Naming the band the peer needs and the input lacks.
        """
        raise NotImplementedError

    def cloud_mask(self, image: np.ndarray, descriptors: BandDescriptors, threads: int = 1) -> np.ndarray:
        """The peer's cloud mask of one image.

        Parameters
        ----------
        image : numpy.ndarray
            (N, H, W) TOA reflectance (0 to about 1) for reflective bands (thermal bands,
            brightness temperature in K, are not used); NaN for no data.
        descriptors : BandDescriptors
            The N bands of ``image``.
        threads : int
            CPU threads the peer may use.

        Returns
        -------
        numpy.ndarray
            (H, W) bool, True for cloud.
        """
        raise NotImplementedError

    def _selected(self, image: np.ndarray, descriptors: BandDescriptors) -> np.ndarray:
        """(H, W, n) float32 of the peer's bands, NaN (no data) as 0 like our model's input."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[0] != len(descriptors):
            raise ValueError(f"image must be (bands, H, W) with {len(descriptors)} bands, got {image.shape}")
        names = self.bands(descriptors)
        idx = [descriptors.names.index(n) for n in names]
        selected = image[idx]
        check_band_values(selected, descriptors.select(names), where=f"(input of {self.name})")
        return np.ascontiguousarray(np.moveaxis(np.nan_to_num(selected, nan=0.0), 0, -1), np.float32)


#: The Sentinel-2 bands s2cloudless's classifier takes, in its order.
_S2CLOUDLESS_BANDS = ("B01", "B02", "B04", "B05", "B08", "B8A", "B09", "B10", "B11", "B12")


@dataclass(frozen=True)
class S2Cloudless(Peer):
    """s2cloudless with its defaults: cloud where the probability, averaged over a disk of
    radius 1 pixel, exceeds 0.4; the mask then dilated by a disk of radius 1."""

    name: str = "s2cloudless"
    package: str = "s2cloudless"
    threshold: float = 0.4
    average_over: int = 1
    dilation_size: int = 1

    def bands(self, descriptors: BandDescriptors) -> list[str]:
        from .. import catalogs

        s2 = catalogs.get_sensor("sentinel2_msi")
        lo, mid, hi = descriptors.wavelengths_nm.T
        used: list[str] = []
        for name in _S2CLOUDLESS_BANDS:
            want = s2.band(name)
            ok = [i for i in range(len(descriptors))
                  if want.min_nm <= mid[i] <= want.max_nm and descriptors.kinds[i] == "reflective"
                  and descriptors.names[i] not in used]
            if not ok:
                raise MissingBandError(
                    f"s2cloudless needs Sentinel-2 band {name} ({want.min_nm:g}-{want.max_nm:g} nm) "
                    f"and these bands have none: "
                    + ", ".join(f"{n} ({c:g} nm)" for n, c in zip(descriptors.names, mid))
                    + "; it runs on Sentinel-2 L1C only")
            used.append(descriptors.names[min(ok, key=lambda i: abs(mid[i] - want.center_nm))])
        return used

    def cloud_probability(self, image: np.ndarray, descriptors: BandDescriptors, threads: int = 1) -> np.ndarray:
        """s2cloudless's cloud probability (H, W) float32, 0-1 (before its averaging)."""
        return self._detector().get_cloud_probability_maps(
            self._selected(image, descriptors)[None], num_threads=threads)[0]

    def cloud_mask(self, image: np.ndarray, descriptors: BandDescriptors, threads: int = 1) -> np.ndarray:
        detector = self._detector()
        prob = detector.get_cloud_probability_maps(self._selected(image, descriptors)[None], num_threads=threads)
        return detector.get_mask_from_prob(prob)[0].astype(bool)

    def _detector(self):
        from s2cloudless import S2PixelCloudDetector

        return S2PixelCloudDetector(threshold=self.threshold, all_bands=False,
                                    average_over=self.average_over, dilation_size=self.dilation_size)


@dataclass(frozen=True)
class UkisCsmask(Peer):
    """ukis-csmask (L1C models): classes clear / cloud / cloud shadow, the arg-max class
    decides; cloud is class 1 (shadow counts as not cloud, like our labels)."""

    name: str = "ukis-csmask"
    package: str = "ukis_csmask"
    #: 6, 4, or None for the 6-band model where the bands are there, else the 4-band one.
    n_bands: int | None = None
    product_level: str = "l1c"

    _REGIONS6 = ("blue", "green", "red", "nir", "swir16", "swir22")

    def bands(self, descriptors: BandDescriptors) -> list[str]:
        found = {r: region_band(descriptors, r) for r in self._REGIONS6}
        want = self._REGIONS6[:4] if self.n_bands == 4 else self._REGIONS6
        if self.n_bands is None and any(found[r] is None for r in self._REGIONS6[4:]):
            want = self._REGIONS6[:4]
        missing = [REGIONS[r].describe() for r in want if found[r] is None]
        if missing:
            raise MissingBandError(f"{self.name} needs a {' and a '.join(missing)}; these bands have "
                                   "none: " + ", ".join(descriptors.names))
        return [found[r] for r in want]

    def cloud_mask(self, image: np.ndarray, descriptors: BandDescriptors, threads: int = 1) -> np.ndarray:
        from ukis_csmask.mask import CSmask

        img = self._selected(image, descriptors)
        n = img.shape[-1]
        with warnings.catch_warnings():
            # It warns below 256 x 256 px (its tile size); small images are padded, which is fine.
            warnings.filterwarnings("ignore", message="Your input image is smaller", category=UserWarning)
            csm = CSmask(img, band_order=list(self._REGIONS6[:n]), product_level=self.product_level,
                         intra_op_num_threads=threads, inter_op_num_threads=1,
                         providers=["CPUExecutionProvider"])
        return csm.csm[..., 0] == 1


#: Peer methods by name.
PEERS: dict[str, Peer] = {p.name: p for p in (
    S2Cloudless(),
    UkisCsmask(),
    UkisCsmask(name="ukis-csmask-4b", n_bands=4),
)}


def list_peers() -> list[str]:
    """Names accepted by :func:`get_peer`."""
    return list(PEERS)


def get_peer(name: str) -> Peer:
    """A peer method by name (see :data:`PEERS`)."""
    try:
        return PEERS[str(name).strip().lower()]
    except KeyError:
        raise ValueError(f"unknown peer method {name!r}; known: {', '.join(PEERS)}") from None
