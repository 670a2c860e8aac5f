"""The ``evcast`` entry point: error messages, and a start-up that imports no heavy library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from forecasting.cli import describe_error, main
from forecasting.cli.ingest_solar import PV_FORMATS, WEATHER_FORMATS
from forecasting.cli.train import MODEL_CHOICES
from forecasting.errors import ConfigError, ForecastingError, UnknownSiteError
from tests.conftest import REPO_ROOT

HEAVY = ("mlflow", "prefect", "lightgbm", "pvlib", "fastapi", "uvicorn", "httpx", "sklearn")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(
            UnknownSiteError("site 'x' is unknown"), "site 'x' is unknown", id="key-error"
        ),
        pytest.param(ConfigError("bad value 3"), "bad value 3", id="value-error"),
        pytest.param(ConfigError(3), "3", id="non-string-arg"),
        pytest.param(ConfigError(), "", id="no-args"),
    ],
)
def test_describe_error_prints_the_message_as_written(
    error: ForecastingError, expected: str
) -> None:
    assert describe_error(error) == expected


def test_main_prints_unknown_site_without_quotes(
    evcast_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pv_file = tmp_path / "pv.csv"
    pv_file.write_text("time,power\n")
    argv = ["evcast", "ingest", "pv", str(pv_file), "--site", "no-such-site", "--format", "pvdaq"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: site 'no-such-site' is not configured in "), err
    assert err.rstrip().endswith("add a [[sites]] block"), err


def test_cli_import_loads_no_heavy_library() -> None:
    code = f"import sys, forecasting.cli; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == ""


def test_help_choices_match_the_modules_that_define_them() -> None:
    from forecasting.backtest.models import MODEL_NAMES
    from forecasting.ingest.pv import PV_FORMATS as INGEST_PV_FORMATS
    from forecasting.ingest.weather import WEATHER_FORMATS as INGEST_WEATHER_FORMATS

    assert MODEL_CHOICES == MODEL_NAMES
    assert PV_FORMATS == INGEST_PV_FORMATS
    assert WEATHER_FORMATS == INGEST_WEATHER_FORMATS
