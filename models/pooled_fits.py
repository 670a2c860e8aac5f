"""A small in-process memo of pooled fits, so training N sites one by one costs one pooled fit.

The nightly flow trains site by site (``DemandForecaster.fit`` per site, also at every refit of
each site's evaluation backtest). With ``pooling = "hybrid"`` (or the global fallback) every
one of those fits needs the same pooled work: the training matrices of all pool sites, the
pooled P10/P90 boosters, every pool site's P50 (the pooled conformal shifts are measured with
each held-out row's own-site P50) and the shifts. Fitting it per site made N sites cost N pooled
fits and N^2 matrix builds and P50 fits. The memo fits it once per key and hands the same
result to every site.

The key is everything the pooled fit reads (:meth:`models.demand_fitting.DemandFitter.pooled`):
content fingerprints of the known sessions and of the weather
(:func:`compute_content_fingerprint`), the fit time, the features, the pool's site configs in
pool order and the model config. The fit is deterministic (fixed seed and threads), so a
memoised result is the one a fresh fit would give, bit for bit. A memo rather than the flow
fitting the pool once and handing it to each site: ``fit`` keeps its protocol signature, so the
flow, the CLI and the evaluation backtest share the saving without knowing the model's
internals, and each site's logged model stays self-contained.

Thread-safe: a lock per key, so two threads training two sites at once do not both fit; the
second waits for the first and reuses its result. Bounded: the least recently used entries are
dropped beyond ``max_entries`` (a night needs one per fit time in flight: the final fit and the
refits of the evaluation backtest, per site timezone; an entry holds boosters only, not the
matrix). A fit that raises is not stored (the next caller fits again and sees the same error).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Final, TypeVar, cast

import polars as pl

DEFAULT_MAX_ENTRIES: Final = 8

T = TypeVar("T")


@dataclass(frozen=True)
class MemoStats:
    """What a memo did since it was created or cleared.

    Attributes
    ----------
    fits
        Results computed (misses) [-].
    hits
        Results served from the memo [-].
    entries
        Results held now [-].
    """

    fits: int
    hits: int
    entries: int


@dataclass
class _Entry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: bool = False
    value: object = None


class FitMemo:
    """Bounded, thread-safe memo of deterministic fits, computed at most once per key.

    Parameters
    ----------
    max_entries
        Results kept at most [-]; the least recently used are dropped first.
    """

    def __init__(self, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1:
            msg = f"max_entries must be at least 1, got {max_entries!r}"
            raise ValueError(msg)
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._fits = 0
        self._hits = 0

    def get_or_fit(self, key: Hashable, fit: Callable[[], T]) -> T:
        """Return the result stored under ``key``, calling ``fit()`` first when there is none.

        Concurrent callers with the same key wait for one ``fit()``; other keys run in parallel.
        """
        entry = self._entry(key)
        with entry.lock:
            if entry.done:
                with self._lock:
                    self._hits += 1
                return cast("T", entry.value)
            value = fit()
            entry.value, entry.done = value, True
            with self._lock:
                self._fits += 1
            return value

    def _entry(self, key: Hashable) -> _Entry:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry()
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)  # a waiter keeps its own reference
            else:
                self._entries.move_to_end(key)
            return entry

    def stats(self) -> MemoStats:
        """Fits, hits and entries held, counted since creation or the last :meth:`clear`."""
        with self._lock:
            return MemoStats(fits=self._fits, hits=self._hits, entries=len(self._entries))

    def clear(self) -> None:
        """Drop every result and reset the statistics."""
        with self._lock:
            self._entries.clear()
            self._fits = self._hits = 0


POOLED_FITS: Final = FitMemo()
"""The process-wide memo of pooled demand fits (:class:`models.demand.DemandForecaster`)."""


def compute_content_fingerprint(frame: pl.DataFrame | None) -> str:
    """Return a digest of a frame's schema and rows, in order; ``""`` for None.

    Built on polars' ``hash_rows`` with a fixed seed, so it is stable within a process (the memo
    never outlives one), not across polars versions. Two frames with the same rows in another
    order get different digests: a memo miss, never a wrong hit.
    """
    if frame is None:
        return ""
    digest = hashlib.sha256(repr(list(frame.schema.items())).encode())
    digest.update(frame.height.to_bytes(8, "little"))
    if frame.height and frame.width:
        hashes = frame.hash_rows(seed=0)
        digest.update(hashes.to_numpy().tobytes())
    return digest.hexdigest()
