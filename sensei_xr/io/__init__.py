"""Reading scenes: files (rioxarray) and STAC (stackstac)."""

from .files import RASTER_SUFFIXES, SceneError, open_scene

__all__ = ["open_scene", "SceneError", "RASTER_SUFFIXES"]
