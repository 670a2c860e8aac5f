"""``evcast ingest sessions`` and ``evcast sites`` end to end on the bundled sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import forecasting.cli.ingest_sessions
import forecasting.cli.sites
from forecasting.cli.app import app
from forecasting.settings import REPO_ROOT

SAMPLE = REPO_ROOT / "data" / "sample" / "sessions"
PERTH = SAMPLE / "perth-kinross" / "sept18toaug19standardisedcorrected.csv"
ACN = SAMPLE / "acn-caltech-2021" / "acndata_sessions_2021-05-01_14.json"
TRONDHEIM = SAMPLE / "trondheim-residential" / "ev_charging_reports_bl2.csv"
TRONDHEIM_MAP = REPO_ROOT / "configs" / "sources" / "trondheim.toml"

# importing these registers `evcast ingest sessions` and `evcast sites` on the app
COMMANDS = (forecasting.cli.ingest_sessions.ingest_sessions, forecasting.cli.sites.sites)


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def ingest_json(*args: str, code: int = 0) -> dict[str, object]:
    return json.loads(run("ingest", "sessions", *args, "--json", code=code))


def lake_files(home: Path) -> dict[str, float]:
    files = (p for p in (home / "lake").rglob("*") if p.is_file() and p.name != ".lock")
    return {str(p.relative_to(home)): p.stat().st_mtime for p in files}


def test_ingest_all_formats_then_reingest_is_idempotent(evcast_home: Path) -> None:
    perth = ingest_json(str(PERTH), "--format", "chargeplace")
    acn = ingest_json(str(ACN), "--format", "acn")
    trondheim = ingest_json(str(TRONDHEIM), "--format", "csv", "--column-map", str(TRONDHEIM_MAP))
    for summary in (perth, acn, trondheim):
        assert (
            summary["accepted"] + summary["quarantined"] + summary["duplicates"]
            == summary["rows_read"]
        )
        assert summary["rejected_files"] == []
    assert perth["rows_read"] == 14_980  # data lines of the sample (data/sample/README.md)
    before = lake_files(evcast_home)
    again = ingest_json(str(PERTH), "--format", "chargeplace")
    assert {k: again[k] for k in ("accepted", "quarantined", "by_reason")} == {
        k: perth[k] for k in ("accepted", "quarantined", "by_reason")
    }
    assert lake_files(evcast_home) == before

    sites = {s["site_id"]: s for s in json.loads(run("sites", "--json"))}
    assert sites["broxden-park-ride-perth"]["sessions"] > 6_000
    assert sites["acn-caltech"]["sessions"] == acn["accepted"]
    assert sites["trondheim-bl2"]["sessions"] == trondheim["accepted"]
    assert sites["serf-east"]["sessions"] == 0
    table = run("sites")
    assert "trondheim-bl2" in table


def test_rejected_file_is_reported_and_others_continue(evcast_home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "latin1.csv"
    bad.write_bytes(PERTH.read_bytes()[:2000].replace(b"Broxden", b"Br\xf6xden"))
    good = tmp_path / "good.csv"
    good.write_bytes(b"".join(PERTH.read_bytes().splitlines(keepends=True)[:101]))
    summary = ingest_json(str(bad), str(good), "--format", "chargeplace", code=1)
    assert summary["files"] == ["good.csv"]
    assert summary["rows_read"] == 100
    assert summary["accepted"] + summary["quarantined"] + summary["duplicates"] == 100
    [rejected] = summary["rejected_files"]
    assert rejected["file"] == "latin1.csv"
    assert "is not UTF-8" in rejected["error"]


def test_human_output_shows_balance_and_reasons(evcast_home: Path, tmp_path: Path) -> None:
    head = tmp_path / "head.csv"
    head.write_bytes(b"".join(PERTH.read_bytes().splitlines(keepends=True)[:401]))
    output = run("ingest", "sessions", str(head), "--format", "chargeplace")
    assert "rows read" in output
    assert "= 400" in output
    assert "quarantined by reason" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--format", "xls"], "use one of chargeplace, acn, csv", id="bad-format"),
        pytest.param(["--format", "csv"], "needs a column map", id="csv-without-map"),
    ],
)
def test_bad_options_fail_clearly(evcast_home: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["ingest", "sessions", str(TRONDHEIM), *args])
    assert result.exit_code != 0
    assert message in result.output + str(result.exception)
