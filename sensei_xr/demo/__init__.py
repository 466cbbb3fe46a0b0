"""Demo and test tooling, outside the cloud-mask core (the core never imports it).

* :mod:`.catalog` - a STAC catalog (COGs + items) built from the real sample scenes, laid
  out as public APIs lay theirs out.
* :mod:`.server` - :class:`RustacServer`, a real STAC API on 127.0.0.1 (``rustac serve``;
  ``pip install "sensei_xr[demo]"``).

``sensei-xr demo`` uses both: build the catalog, serve it, search it, mask what it finds.
"""

from .catalog import DEMO_L8_COLLECTION, DEMO_S2_COLLECTION, DemoCatalog, build_demo_catalog, build_demo_collection
from .server import RustacServer, find_rustac

__all__ = ["DEMO_S2_COLLECTION", "DEMO_L8_COLLECTION", "DemoCatalog", "build_demo_catalog", "build_demo_collection",
           "RustacServer", "find_rustac"]
