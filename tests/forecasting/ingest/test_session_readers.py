"""The three session readers on the real shared files, the bundled sample and edge cases."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from forecasting.config import load_sites
from forecasting.errors import ConfigError
from forecasting.ingest import validate_sessions as rules
from forecasting.ingest.column_map import load_column_map
from forecasting.ingest.sessions import SessionsRead, read_sessions
from forecasting.ingest.summary import IngestSummary
from forecasting.schemas import QUARANTINE_SCHEMA, SESSIONS_SCHEMA, validate_frame
from forecasting.settings import REPO_ROOT

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SITES = load_sites(REPO_ROOT / "configs" / "sites.toml")
TRONDHEIM = REPO_ROOT / "configs" / "sources" / "trondheim.toml"
SAMPLE_DIR = REPO_ROOT / "data" / "sample"
PERTH_FILES = (
    "electricvehiclechargecorrected.csv",
    "sept17toaug18standardisedcorrected.csv",
    "sept18toaug19standardisedcorrected.csv",
)
HEADER = "CP ID,Connector,Start Date,Start Time,End Date,End Time,Total kWh,Site,Model"


def read(path: Path, fmt: str, column_map: Path | None = None) -> SessionsRead:
    result = read_sessions(path, fmt=fmt, sites=SITES, ingested_at=NOW, column_map=column_map)
    validate_frame(result.sessions, SESSIONS_SCHEMA, name="sessions")
    validate_frame(result.quarantine, QUARANTINE_SCHEMA, name="quarantine")
    result.summary.check_balance()
    return result


def assert_unique_keys(result: SessionsRead) -> None:
    keys = result.sessions.select("site_id", "session_id")
    assert keys.is_unique().all()


@pytest.mark.shared_data
def test_balance_on_all_real_session_files(shared_data: Path) -> None:
    sessions = shared_data / "sessions"
    reads = [read(sessions / "perth-kinross" / name, "chargeplace") for name in PERTH_FILES]
    reads.append(read(sessions / "acn-caltech-2021" / "acndata_sessions.json", "acn"))
    trondheim = sessions / "trondheim-residential" / "ev_charging_reports.csv"
    reads.append(read(trondheim, "csv", TRONDHEIM))
    total = IngestSummary()
    for one in reads:
        total.add(one.summary)
        assert_unique_keys(one)
    total.check_balance()
    # rows of the published files (shared/data README): 66,664 Perth, 2,114 ACN, 6,878 Trondheim
    assert total.rows_read == 66_664 + 2_114 + 6_878
    # Perth quirks counted in shared/data/README.md: 185 without end or energy, 1,612 energy <= 0
    perth = IngestSummary()
    for one in reads[:3]:
        perth.add(one.summary)
    assert perth.by_reason[rules.MISSING_FIELD] == 185
    assert perth.by_reason[rules.NONPOSITIVE_ENERGY] == 1_612
    assert perth.by_reason[rules.UNPLUG_BEFORE_PLUGIN] == 6
    assert perth.by_reason[rules.EXCLUDED_SITE] == 21  # "***TEST SITE***" rows


@pytest.mark.shared_data
def test_perth_sites_all_resolve_to_configured_ids(shared_data: Path) -> None:
    path = shared_data / "sessions" / "perth-kinross" / PERTH_FILES[0]
    result = read(path, "chargeplace")
    assert result.discovered_sites.height == 0
    assert result.sessions["max_power_kw"].null_count() == 0
    assert set(result.sessions["max_power_kw"].unique().to_list()) <= {7.0, 22.0, 50.0}


@pytest.mark.shared_data
def test_acn_reader_on_real_export(shared_data: Path) -> None:
    result = read(shared_data / "sessions" / "acn-caltech-2021" / "acndata_sessions.json", "acn")
    sessions = result.sessions
    assert set(sessions["site_id"].unique().to_list()) == {"acn-caltech"}
    first = sessions.row(0, named=True)
    # "Sat, 01 May 2021 20:42:47 GMT" .. "21:32:12 GMT"; doneChargingTime null
    assert first["plug_in_at"] == datetime(2021, 5, 1, 20, 42, 47, tzinfo=UTC)
    assert first["plug_out_at"] == datetime(2021, 5, 1, 21, 32, 12, tzinfo=UTC)
    assert first["charging_done_at"] is None
    assert first["energy_kwh"] == pytest.approx(30.936, abs=1e-9)  # copied, not computed
    attributes = json.loads(first["attributes"])
    assert attributes["userInputs"][0]["kWhRequested"] == pytest.approx(71.5, abs=1e-9)
    # shared README: 686 sessions without doneChargingTime
    assert sessions["charging_done_at"].null_count() + result.quarantine.height >= 686


@pytest.mark.shared_data
def test_trondheim_reader_on_real_file(shared_data: Path) -> None:
    path = shared_data / "sessions" / "trondheim-residential" / "ev_charging_reports.csv"
    result = read(path, "csv", TRONDHEIM)
    first = result.sessions.row(0, named=True)
    # "21.12.2018 10:20" Europe/Oslo (CET) = 09:20 UTC; "0,3" kWh
    assert first["plug_in_at"] == datetime(2018, 12, 21, 9, 20, tzinfo=UTC)
    assert first["energy_kwh"] == pytest.approx(0.3, abs=1e-12)
    assert first["site_id"] == "trondheim-ado3"
    assert result.discovered_sites["timezone"].unique().to_list() == ["Europe/Oslo"]
    assert result.summary.by_reason[rules.MISSING_FIELD] == 34  # "NA" end times


@pytest.mark.parametrize(
    ("relative", "fmt", "column_map", "sites"),
    [
        pytest.param(
            "perth-kinross/sept18toaug19standardisedcorrected.csv",
            "chargeplace",
            None,
            {
                "broxden-park-ride-perth",
                "kinross-park-and-ride-kinross",
                "leslie-street-car-park-blairgowrie",
            },
            id="perth",
        ),
        pytest.param(
            "acn-caltech-2021/acndata_sessions_2021-05-01_14.json",
            "acn",
            None,
            {"acn-caltech"},
            id="acn",
        ),
        pytest.param(
            "trondheim-residential/ev_charging_reports_bl2.csv",
            "csv",
            TRONDHEIM,
            {"trondheim-bl2"},
            id="trondheim",
        ),
    ],
)
def test_readers_on_bundled_sample(
    relative: str, fmt: str, column_map: Path | None, sites: set[str]
) -> None:
    result = read(SAMPLE_DIR / "sessions" / relative, fmt, column_map)
    assert set(result.sessions["site_id"].unique().to_list()) == sites
    assert result.summary.accepted > 0.9 * result.summary.rows_read
    assert_unique_keys(result)


def test_perth_sample_spans_twelve_months() -> None:
    path = SAMPLE_DIR / "sessions" / "perth-kinross" / "sept18toaug19standardisedcorrected.csv"
    months = read(path, "chargeplace").sessions["plug_in_at"].dt.strftime("%Y-%m").unique()
    assert months.len() == 12


def test_columns_are_read_by_name(tmp_path: Path) -> None:
    path = tmp_path / "variant.csv"
    path.write_text(
        "Charging event id,Site,Model,User ID,Total kWh,CP ID,Connector,"
        "Start Date,Start Time,End Date,End Time,Cost,Group,,\n"
        '991,"South Inch Car Park, Perth",APT 22kW Dual Outlet,u-7,10.5,50276,2,'
        "01/07/2018,10:00,01/07/2018,12:00,2.10,Public,,\n"
        ",,,,,,,,,,,,,,\n",
        encoding="utf-8",
    )
    result = read(path, "chargeplace")
    assert result.summary.rows_read == 2
    session = result.sessions.row(0, named=True)
    assert (session["site_id"], session["station_id"], session["connector_id"]) == (
        "south-inch-car-park-perth",
        "50276",
        "2",
    )
    assert session["max_power_kw"] == pytest.approx(22.0, abs=0)
    assert json.loads(session["attributes"]) == {
        "Charging event id": "991",
        "User ID": "u-7",
        "Cost": "2.10",
        "Group": "Public",
    }
    assert result.quarantine["reason"].to_list() == [rules.MISSING_FIELD]


@pytest.mark.parametrize(
    ("starts", "ends", "energies"),
    [
        pytest.param(
            ["21.12.2018 10:20", "22.12.2018 10:20"],
            ["21.12.2018 12:20", "22.12.2018 12:20"],
            ["3,5", "4,25"],
            id="text-columns",
        ),
        pytest.param(
            [datetime(2018, 12, 21, 10, 20), datetime(2018, 12, 22, 10, 20)],
            [datetime(2018, 12, 21, 12, 20), datetime(2018, 12, 22, 12, 20)],
            [3.5, 4.25],
            id="typed-columns",
        ),
    ],
)
def test_parquet_through_a_column_map(
    tmp_path: Path, starts: list[object], ends: list[object], energies: list[object]
) -> None:
    path = tmp_path / "garage.parquet"
    pl.DataFrame(
        {
            "Garage_ID": ["Bl2", "Bl2"],
            "User_ID": ["Bl2-1", "Bl2-1"],
            "Start_plugin": starts,
            "End_plugout": ends,
            "El_kWh": energies,
        }
    ).write_parquet(path)
    result = read(path, "csv", TRONDHEIM)
    assert result.sessions["energy_kwh"].to_list() == [3.5, 4.25]
    assert result.sessions["site_id"].unique().to_list() == ["trondheim-bl2"]
    # 10:20 Europe/Oslo in winter (CET, UTC+1) is 09:20 UTC
    assert result.sessions["plug_in_at"][0] == datetime(2018, 12, 21, 9, 20, tzinfo=UTC)


def test_csv_needs_a_column_map(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="needs a column map"):
        read_sessions(path, fmt="csv", sites=SITES, ingested_at=NOW)


def test_column_map_needs_site_column_or_constant(tmp_path: Path) -> None:
    bad = TRONDHEIM.read_text().replace('site = "Garage_ID"\n', "")
    path = tmp_path / "bad.toml"
    path.write_text(bad, encoding="utf-8")
    with pytest.raises(ConfigError, match="exactly one of `site`"):
        load_column_map(path)


def _perth_file(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "dst.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


BROXDEN = '"Broxden Park & Ride, Perth",APT 22kW Dual Outlet'


@pytest.mark.parametrize(
    ("times", "plug_in", "plug_out", "flags"),
    [
        pytest.param(
            ("25/03/2018,01:30", "25/03/2018,03:30"),
            datetime(2018, 3, 25, 1, 30, tzinfo=UTC),  # read as 01:30 GMT (= 02:30 BST)
            datetime(2018, 3, 25, 2, 30, tzinfo=UTC),
            ["plug_in_at:dst_nonexistent_shifted"],
            id="spring-forward-nonexistent",
        ),
        pytest.param(
            ("28/10/2018,01:30", "28/10/2018,01:50"),
            datetime(2018, 10, 28, 0, 30, tzinfo=UTC),  # earliest: 01:30 BST
            datetime(2018, 10, 28, 0, 50, tzinfo=UTC),
            ["plug_in_at:dst_ambiguous_earliest", "plug_out_at:dst_ambiguous_earliest"],
            id="fall-back-ambiguous",
        ),
        pytest.param(
            ("28/10/2018,01:50", "28/10/2018,01:10"),
            datetime(2018, 10, 28, 0, 50, tzinfo=UTC),  # 01:50 BST
            datetime(2018, 10, 28, 1, 10, tzinfo=UTC),  # 01:10 GMT, after the fall-back
            ["plug_in_at:dst_ambiguous_earliest", "plug_out_at:dst_ambiguous_latest"],
            id="fall-back-unplug-in-second-hour",
        ),
    ],
)
def test_dst_changes_follow_the_documented_rule(
    tmp_path: Path,
    times: tuple[str, str],
    plug_in: datetime,
    plug_out: datetime,
    flags: list[str],
) -> None:
    start, end = times
    result = read(_perth_file(tmp_path, f"50284,1,{start},{end},3.5,{BROXDEN}"), "chargeplace")
    assert result.quarantine.height == 0
    session = result.sessions.row(0, named=True)
    assert (session["plug_in_at"], session["plug_out_at"]) == (plug_in, plug_out)
    assert json.loads(session["attributes"])["flags"] == flags
