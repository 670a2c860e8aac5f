"""The audit log writer: records are buffered and appended to the store in batches.

Writing one row per request would put a database commit on every fetch; instead records wait
at most ``audit_flush_s`` seconds (and are flushed when the server stops).
"""

from __future__ import annotations

import threading

from sqlalchemy.engine import Engine

from forecasting.io.forecast_store import AuditRecord, write_audit


class AuditBuffer:
    """Collect audit records and append them to the store on :meth:`flush`."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._pending: list[AuditRecord] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()

    def add(self, record: AuditRecord) -> None:
        """Queue one record."""
        with self._lock:
            self._pending.append(record)

    def flush(self) -> int:
        """Append every queued record to the store; return how many were written."""
        with self._write_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            try:
                write_audit(self._engine, batch)
            except BaseException:
                with self._lock:
                    self._pending = batch + self._pending
                raise
            return len(batch)
