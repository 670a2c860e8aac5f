"""MLflow adapter, the model registry: versions, champion/challenger aliases, loading, listing.

A trained run's ``model`` artifact is registered as a new version of
``evcast-<site_id>-<target>``; aliases name the champion and the challenger. Loading a version
runs its smoke check (:mod:`forecasting.io.tracking_model`). Every call goes through
:func:`forecasting.io.tracking_store.call_store` (bounded retries).
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import mlflow.artifacts
from mlflow.entities.model_registry import ModelVersion, RegisteredModel

from forecasting.errors import StoreError
from forecasting.io.tracking_model import ForecasterModel, ModelSmokeCheckError, check_model_folder
from forecasting.io.tracking_store import MODEL_ARTIFACT, Tracking, call_store, is_transient

CHAMPION: Final = "champion"
CHALLENGER: Final = "challenger"


def register_model(
    tracking: Tracking,
    *,
    name: str,
    run_id: str,
    tags: Mapping[str, str],
    model_tags: Mapping[str, str],
) -> str:
    """Register the run's ``model`` artifact as a new version of ``name``; return the version.

    The registered model is created on first use, tagged with ``model_tags`` (``site_id``,
    ``target``); ``tags`` go on the version. No alias is set here: see :func:`set_alias`.
    """
    client = tracking.client
    if _find_registered_model(tracking, name) is None:
        call_store(
            tracking,
            f"create registered model {name!r}",
            lambda: client.create_registered_model(name, tags=dict(model_tags)),
        )
    run = call_store(tracking, f"read run {run_id!r}", lambda: client.get_run(run_id))
    source = f"{run.info.artifact_uri}/{MODEL_ARTIFACT}"
    version = call_store(
        tracking,
        f"create a version of {name!r}",
        lambda: client.create_model_version(name, source, run_id=run_id, tags=dict(tags)),
    )
    return str(version.version)


def _find_registered_model(tracking: Tracking, name: str) -> RegisteredModel | None:
    found = call_store(
        tracking,
        f"find registered model {name!r}",
        lambda: tracking.client.search_registered_models(filter_string=f"name = '{name}'"),
    )
    return found[0] if found else None


def read_aliases(tracking: Tracking, name: str) -> dict[str, str]:
    """Return the aliases of a registered model (alias to version); empty when it is absent."""
    model = _find_registered_model(tracking, name)
    if model is None:
        return {}
    return {alias: str(version) for alias, version in model.aliases.items()}


def set_alias(tracking: Tracking, *, name: str, alias: str, version: str) -> None:
    """Point ``alias`` of registered model ``name`` at ``version``."""
    call_store(
        tracking,
        f"set alias {alias!r} of {name!r} to version {version}",
        lambda: tracking.client.set_registered_model_alias(name, alias, version),
    )


def delete_alias(tracking: Tracking, *, name: str, alias: str) -> None:
    """Remove ``alias`` from registered model ``name``, if it is set."""
    if alias in read_aliases(tracking, name):
        call_store(
            tracking,
            f"delete alias {alias!r} of {name!r}",
            lambda: tracking.client.delete_registered_model_alias(name, alias),
        )


def get_version(tracking: Tracking, *, name: str, version: str) -> ModelVersion:
    """Return a model version (tags, run id, source)."""
    return call_store(
        tracking,
        f"read version {version} of {name!r}",
        lambda: tracking.client.get_model_version(name, version),
    )


@dataclass(frozen=True)
class LoadedModel:
    """A registered model version that passed its smoke check."""

    name: str
    version: str
    alias: str
    run_id: str
    model: ForecasterModel
    tags: Mapping[str, str]


def load_model_by_alias(tracking: Tracking, *, name: str, alias: str) -> LoadedModel | None:
    """Load the version ``alias`` points at and check it forecasts its stored smoke input.

    Returns None when ``name`` has no such alias. Raises :class:`ModelSmokeCheckError` when
    the version cannot be downloaded or loaded, or its smoke forecast is not one finite,
    ordered, non-negative row per interval (the caller falls back to a marked baseline), and
    :class:`StoreError` when the store does not answer.
    """
    version_id = read_aliases(tracking, name).get(alias)
    if version_id is None:
        return None
    version = get_version(tracking, name=name, version=version_id)
    where = f"model {name!r} version {version_id} ({alias})"
    with tempfile.TemporaryDirectory(prefix="evcast-load-") as tmp:
        try:
            local = call_store(
                tracking,
                f"download {where}",
                lambda: mlflow.artifacts.download_artifacts(
                    artifact_uri=version.source, dst_path=tmp, tracking_uri=tracking.tracking_uri
                ),
            )
        except StoreError as exc:
            if is_transient(exc):
                raise
            msg = f"{where} cannot be downloaded: {exc}; serve the baseline and retrain it"
            raise ModelSmokeCheckError(msg) from exc
        wrapped = check_model_folder(Path(local), where=where)
    return LoadedModel(name, version_id, alias, str(version.run_id), wrapped, dict(version.tags))


@dataclass(frozen=True)
class VersionSummary:
    """One aliased model version and its scores (mean pinball loss [kWh])."""

    version: str
    run_id: str
    model_kind: str | None
    trained_at: str | None
    score: float | None
    champion_score: float | None
    promotion: str | None


@dataclass(frozen=True)
class ModelSummary:
    """A registered model (one site and target) with its champion and challenger."""

    name: str
    site_id: str | None
    target: str | None
    champion: VersionSummary | None
    challenger: VersionSummary | None


def _float_tag(tags: Mapping[str, str], key: str) -> float | None:
    value = tags.get(key)
    return None if value in (None, "", "None") else float(value)


def _summarise_version(tracking: Tracking, name: str, version: str | None) -> VersionSummary | None:
    if version is None:
        return None
    found = get_version(tracking, name=name, version=version)
    tags = dict(found.tags)
    return VersionSummary(
        version=version,
        run_id=str(found.run_id),
        model_kind=tags.get("model_kind"),
        trained_at=tags.get("issued_at"),
        score=_float_tag(tags, "eval_pinball"),
        champion_score=_float_tag(tags, "champion_eval_pinball"),
        promotion=tags.get("promotion"),
    )


def list_models(tracking: Tracking, *, prefix: str) -> list[ModelSummary]:
    """Every registered model whose name starts with ``prefix``, with champion and challenger."""
    models: list[RegisteredModel] = []
    token: str | None = None
    while True:
        page = call_store(
            tracking,
            "list registered models",
            functools.partial(
                tracking.client.search_registered_models,
                filter_string=f"name LIKE '{prefix}%'",
                page_token=token,
            ),
        )
        models.extend(page)
        token = page.token
        if not token:
            break
    summaries = []
    for model in sorted(models, key=lambda m: m.name):
        aliases = {alias: str(version) for alias, version in model.aliases.items()}
        summaries.append(
            ModelSummary(
                name=model.name,
                site_id=model.tags.get("site_id"),
                target=model.tags.get("target"),
                champion=_summarise_version(tracking, model.name, aliases.get(CHAMPION)),
                challenger=_summarise_version(tracking, model.name, aliases.get(CHALLENGER)),
            )
        )
    return summaries
