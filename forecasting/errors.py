"""Exception hierarchy of evcast.

Every error the package raises on purpose derives from :class:`ForecastingError`, and also from
the builtin exception that matches its meaning, so callers can catch either. Messages follow the
polars convention: lowercase, the bad value quoted with ``!r``, and a hint of what to do next.
"""

from __future__ import annotations


class ForecastingError(Exception):
    """Root of every error raised on purpose by evcast."""


class ConfigError(ForecastingError, ValueError):
    """A configuration file or setting is missing, malformed or out of bounds."""


class SchemaError(ForecastingError, ValueError):
    """A frame does not have the columns or types a canonical schema requires."""


class InputFileError(ForecastingError, ValueError):
    """An input file cannot be read (encoding, truncation, layout); nothing of it is loaded."""


class UnknownSiteError(ForecastingError, KeyError):
    """A site id is neither configured nor present in the data."""


class NotFittedError(ForecastingError, AttributeError):
    """A model was used before ``fit`` was called."""


class StoreError(ForecastingError, RuntimeError):
    """A store (lake, forecast store, model registry) cannot be read or written."""
