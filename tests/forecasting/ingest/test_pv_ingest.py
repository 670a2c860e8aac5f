from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl
import pytest
from typer.testing import CliRunner

import forecasting.cli.ingest_solar  # noqa: F401  (registers the solar ingest commands)
from forecasting.cli.app import app
from forecasting.config import load_sites
from forecasting.errors import InputFileError
from forecasting.ingest import solar_flags as flags
from forecasting.ingest.pv import read_pv
from forecasting.io.lake import read_table
from forecasting.io.quarantine import read_quarantine
from forecasting.schemas import PV_SCHEMA, validate_frame
from forecasting.settings import REPO_ROOT

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SERF = load_sites(REPO_ROOT / "configs" / "sites.toml").get("serf-east")
SAMPLE_PV = REPO_ROOT / "data" / "sample" / "pv" / "serf_east_15min_ac_power.csv"


def _check_serf(read, raw: pl.DataFrame) -> None:
    validate_frame(read.accepted, PV_SCHEMA, name="pv")
    values = raw["ac_power"].drop_nulls()
    assert read.summary.rows_read == values.len()
    assert read.summary.balanced
    assert read.accepted["pv_ac_kw"].min() == 0.0
    # every negative source value was clipped to 0 and flagged; nothing else was
    assert read.flag_counts[flags.NEGATIVE_CLIPPED] == (values < 0).sum()
    # "2016-07-01 10:00:00-07:00" is the 41st row, 1816.6 W
    at = datetime(2016, 7, 1, 17, tzinfo=UTC)
    got = read.accepted.filter(pl.col("interval_start") == at)["pv_ac_kw"].item()
    assert got == pytest.approx(1.8166, abs=1e-12)  # W -> kW, float rounding only


@pytest.mark.shared_data
def test_pvdaq_real_file(shared_data):
    path = shared_data / "pv" / "serf-east" / "serf_east_15min_ac_power.csv"
    _check_serf(read_pv(path, site=SERF, fmt="pvdaq", ingested_at=NOW), pl.read_csv(path))


def test_pvdaq_sample():
    read = read_pv(SAMPLE_PV, site=SERF, fmt="pvdaq", ingested_at=NOW)
    _check_serf(read, pl.read_csv(SAMPLE_PV))
    assert read.missing_intervals == 0


def test_csv_rules(tmp_path):
    path = tmp_path / "pv.csv"
    path.write_text(
        "interval_start,pv_ac_kw\n"
        "2016-07-15T18:00Z,2.5\n"
        "2016-07-15T18:15Z,-0.05\n"  # standby draw: clipped, flagged
        "2016-07-15T19:00Z,3.0\n"  # two intervals missing before it
        "2016-07-15T19:15Z,-1.0\n"  # far below zero: quarantined
        "2016-07-15T19:30Z,9.0\n"  # 1.67 x the 5.4 kW AC rating: quarantined
        "yesterday,1.0\n"
        "2016-07-15T19:45Z,n/a\n"
        "2016-07-15T18:00Z,2.5\n"  # exact repeat
        "2016-07-15T18:00Z,2.6\n"  # conflicting repeat
    )
    read = read_pv(path, site=SERF, fmt="csv", ingested_at=NOW)
    assert read.accepted["pv_ac_kw"].to_list() == [2.5, 0.0, 3.0]
    assert read.accepted["flags"].to_list() == [[], [flags.NEGATIVE_CLIPPED], [flags.GAP_BEFORE]]
    assert read.missing_intervals == 2
    assert (read.summary.quarantined, read.summary.duplicates) == (5, 1)
    assert dict(read.summary.by_reason) == {
        "implausible_value": 2,
        "unparseable_timestamp": 1,
        "unparseable_value": 1,
        "conflicting_duplicate": 1,
    }
    bad = read.quarantined.sort("row")
    assert bad["row"].to_list() == [4, 5, 6, 7, 9]
    assert bad["value"][:4].to_list() == ["-1.0", "9.0", "yesterday", "n/a"]


def test_missing_columns_are_named(tmp_path):
    path = tmp_path / "pv.csv"
    path.write_text("time,power\n2016-07-15T18:00Z,1\n")
    with pytest.raises(InputFileError, match=r"pv.csv.*\['measured_on', 'ac_power'\]"):
        read_pv(path, site=SERF, fmt="pvdaq", ingested_at=NOW)


def test_non_utf8_rejected(tmp_path):
    path = tmp_path / "pv.csv"
    path.write_bytes(b"measured_on,ac_power\n2016-07-15 12:00:00-06:00,1\xff\n")
    with pytest.raises(InputFileError, match=r"'pv\.csv' is not UTF-8"):
        read_pv(path, site=SERF, fmt="pvdaq", ingested_at=NOW)


def test_cli_ingest_pv_is_idempotent(evcast_home, tmp_path):
    path = tmp_path / "pv.csv"
    path.write_text("interval_start,pv_ac_kw\n2016-07-15T18:00Z,2.5\n2016-07-15T18:15Z,-9\n")
    args = ["ingest", "pv", str(path), "--site", "serf-east", "--format", "csv", "--json"]
    first = CliRunner().invoke(app, args)
    second = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert json.loads(first.output)["lake"]["inserted"] == 1
    assert json.loads(second.output)["lake"]["unchanged"] == 1
    assert read_table(evcast_home / "lake", "pv", PV_SCHEMA).collect()["pv_ac_kw"].to_list() == [
        2.5
    ]
    assert read_quarantine(evcast_home / "quarantine", table="pv").collect()["row"].to_list() == [2]
