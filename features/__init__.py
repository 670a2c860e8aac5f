"""Feature code: demand series, calendar, lags, weather and solar geometry.

Polars frames in and out; the loops inside are compiled with numba, which caches the machine
code in ``features/__pycache__``. Where that folder is read-only (an installed package) and
``NUMBA_CACHE_DIR`` is unset, the cache goes to ``evcast-numba`` in the temporary folder, so
importing never fails for want of a cache location.
"""

import os
import tempfile
from pathlib import Path

if "NUMBA_CACHE_DIR" not in os.environ and not os.access(Path(__file__).parent, os.W_OK):
    os.environ["NUMBA_CACHE_DIR"] = str(Path(tempfile.gettempdir()) / "evcast-numba")
