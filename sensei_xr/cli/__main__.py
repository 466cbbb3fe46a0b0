"""``python -m sensei_xr.cli``: the ``sensei-xr`` command."""

import sys

from . import main

if __name__ == "__main__":  # importing this module (e.g. pkgutil.walk_packages) runs nothing
    sys.exit(main())
