"""Every error sensei_xr raises on purpose: one base, :class:`SenseiError`.

``except sensei_xr.SenseiError`` catches any of them. Each also subclasses the built-in
exception it has always been (``ValueError`` for bad arguments, ``OSError`` for files,
...), so code that catches those keeps working. Messages say what is wrong and how to
fix it, in one sentence each.
"""

from __future__ import annotations

__all__ = [
    "SenseiError",
    "BandError",
    "MissingBandError",
    "CatalogError",
    "UnknownSensorError",
    "UnknownBandError",
    "RadiometryError",
    "SceneError",
    "StacError",
    "StacConnectionError",
    "StacSearchError",
    "NoItemsError",
    "NoUsableBandsError",
    "StacAssetError",
    "ProfileError",
    "WeightsError",
    "InferenceError",
    "DatasetLayoutError",
    "CliError",
]


class SenseiError(Exception):
    """Base of every error sensei_xr raises on purpose."""


# --------------------------------------------------------------------- spectral: bands, catalogs


class BandError(SenseiError, ValueError):
    """A band cannot be described or its values are not what the model expects."""


class MissingBandError(BandError):
    """A band set (or a peer method) needs a band the sensor does not have."""


class CatalogError(SenseiError, ValueError):
    """A catalog file (or dict) is malformed; the message names file, band and field."""


class UnknownSensorError(SenseiError, KeyError, ValueError):
    """No sensor with that id or alias; the message lists the available ids.

    Also a :class:`KeyError` (a failed lookup) and a :class:`ValueError` (a bad argument).
    """

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnknownBandError(SenseiError, ValueError):
    """A sensor has no band with that name or alias; the message lists the valid names."""


# --------------------------------------------------------------------------- io: files, STAC


class RadiometryError(SenseiError, ValueError):
    """Metadata needed for a radiometric conversion is missing or inconsistent."""


class SceneError(SenseiError, ValueError):
    """A scene cannot be opened as asked."""


class StacError(SenseiError):
    """Base of the STAC errors."""


class StacConnectionError(StacError, ConnectionError):
    """The STAC API cannot be reached (connection refused, DNS, timeout, HTTP error)."""


class StacSearchError(StacError, ValueError):
    """The search cannot be run as asked (e.g. a filter the API does not support)."""


class NoItemsError(StacError, LookupError):
    """A search matched no items (or an empty list of items was given)."""


class NoUsableBandsError(StacError, ValueError):
    """An item (or the asked selection) has no spectral band with known wavelengths."""


class StacAssetError(StacError, OSError):
    """An asset cannot be read when the stack is computed; the message names its href."""


class ProfileError(StacError, ValueError):
    """A collection profile file is malformed or no profile has the asked name."""


# ------------------------------------------------------------------ models, inference, training


class WeightsError(SenseiError, RuntimeError):
    """A weights file or model card is missing, damaged or does not fit its architecture."""


class InferenceError(SenseiError, RuntimeError):
    """A block failed; the message names the block's position in the scene."""


class DatasetLayoutError(SenseiError, FileNotFoundError):
    """A dataset folder does not have the published layout; the message says what is expected."""


class CliError(SenseiError):
    """An error the command line reports in one line (exit status 2)."""
