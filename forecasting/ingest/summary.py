"""The balance an ingest reports: every row read is accepted, quarantined or an exact duplicate."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class IngestSummary:
    """Counts of one ingest, for people (``evcast ingest``) and scripts (``--json``).

    The invariant ``accepted + quarantined + duplicates == rows_read`` holds for every ingest;
    :meth:`check_balance` raises when a reader broke it.
    """

    files: list[str] = field(default_factory=list)
    rows_read: int = 0
    accepted: int = 0
    quarantined: int = 0
    duplicates: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)

    def add(self, other: IngestSummary) -> IngestSummary:
        """Add the counts of ``other`` to this summary and return it."""
        self.files.extend(other.files)
        self.rows_read += other.rows_read
        self.accepted += other.accepted
        self.quarantined += other.quarantined
        self.duplicates += other.duplicates
        self.by_reason.update(other.by_reason)
        return self

    @property
    def balanced(self) -> bool:
        """Whether accepted + quarantined + duplicates equals rows read."""
        return self.accepted + self.quarantined + self.duplicates == self.rows_read

    def check_balance(self) -> None:
        """Raise :class:`RuntimeError` when rows went missing (a reader bug)."""
        if not self.balanced:
            msg = (
                f"ingest lost rows: read {self.rows_read}, accepted {self.accepted}, "
                f"quarantined {self.quarantined}, duplicates {self.duplicates}; this is a bug, "
                "please report it with the input files"
            )
            raise RuntimeError(msg)

    def to_dict(self) -> dict[str, object]:
        """Return the summary as one JSON-ready object."""
        return {
            "files": list(self.files),
            "rows_read": self.rows_read,
            "accepted": self.accepted,
            "quarantined": self.quarantined,
            "duplicates": self.duplicates,
            "by_reason": dict(sorted(self.by_reason.items())),
        }
