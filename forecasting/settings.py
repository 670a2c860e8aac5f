"""Runtime settings from the environment (``EVCAST_*`` variables), never from files in the repo.

All state lives under one folder, ``EVCAST_HOME`` (default ``./.evcast``): the session and
weather lake, the quarantine, the MLflow store and the forecast store. Nothing is written
elsewhere by default.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Where evcast keeps its state and finds its configuration."""

    model_config = SettingsConfigDict(env_prefix="EVCAST_", frozen=True)

    home: Path = Field(default=Path(".evcast"), description="Folder holding all evcast state.")
    config_dir: Path = Field(
        default=REPO_ROOT / "configs", description="Folder holding sites.toml and pipeline.toml."
    )
    mlflow_tracking_uri: str | None = Field(
        default=None, description="MLflow tracking URI; default: SQLite store under home."
    )
    store_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the forecast store; default: SQLite under home.",
    )
    signing_key: SecretStr | None = Field(
        default=None, description="Key for HMAC-SHA256 response signatures of the API."
    )

    @property
    def lake_dir(self) -> Path:
        """Folder of the validated session, weather and PV tables."""
        return self.home / "lake"

    @property
    def quarantine_dir(self) -> Path:
        """Folder of rejected rows, one Parquet file per ingest."""
        return self.home / "quarantine"

    @property
    def mlflow_dir(self) -> Path:
        """Folder of the embedded MLflow store (SQLite database and artifacts)."""
        return self.home / "mlflow"

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking URI in force."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.mlflow_dir / 'mlflow.db').resolve()}"

    @property
    def forecast_store_url(self) -> str:
        """SQLAlchemy URL of the forecast store in force."""
        if self.store_url:
            return self.store_url
        return f"sqlite:///{(self.home / 'forecasts.db').resolve()}"

    @property
    def sites_file(self) -> Path:
        """The sites configuration file."""
        return self.config_dir / "sites.toml"
