"""Logging of background work that keeps failing: one traceback, then one line per failure.

A background task retries every few seconds (or, per token, at every request), so logging
each failure with its traceback would flood the log while the store is down.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Hashable


class RepeatedFailures:
    """Log the failures of background work per key: the first with a traceback, then briefly.

    Call :meth:`failed` inside the ``except`` block that caught the error, and
    :meth:`recovered` once the work for that key succeeds again.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._failing: set[Hashable] = set()
        self._lock = threading.Lock()

    def failed(self, key: Hashable, message: str, *args: object) -> None:
        """Log the exception being handled: with its traceback if ``key`` was not failing."""
        with self._lock:
            first = key not in self._failing
            self._failing.add(key)
        if first:
            self._logger.error(message, *args, exc_info=True)
        else:
            error = sys.exc_info()[1]
            self._logger.warning(message + " again: %r", *args, error)

    def recovered(self, key: Hashable) -> None:
        """Forget that ``key`` was failing, so its next failure is logged in full."""
        with self._lock:
            self._failing.discard(key)
