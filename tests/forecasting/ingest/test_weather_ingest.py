from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pvlib
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

import forecasting.cli.ingest_solar  # noqa: F401  (registers the solar ingest commands)
from forecasting.cli.app import app
from forecasting.config import SiteConfig, load_sites
from forecasting.errors import InputFileError
from forecasting.ingest import solar_flags as flags
from forecasting.ingest.solar_sources import WeatherColumnMap, load_weather_column_map
from forecasting.ingest.weather import read_weather
from forecasting.io.lake import read_table
from forecasting.io.quarantine import read_quarantine
from forecasting.schemas import WEATHER_SCHEMA, validate_frame
from forecasting.settings import REPO_ROOT

SAMPLE_DIR = REPO_ROOT / "data" / "sample"

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SERF = load_sites(REPO_ROOT / "configs" / "sites.toml").get("serf-east")
TMY3 = Path(pvlib.__file__).parent / "data" / "723170TYA.CSV"
FORECAST_MAP = load_weather_column_map(REPO_ROOT / "configs/sources/weather_forecast_example.toml")
OBS_MAP = WeatherColumnMap(interval_start="time", ghi="ghi", dni="dni", dhi="dhi")


def _site(lat: float, lon: float, tz: str) -> SiteConfig:
    return SiteConfig(site_id="s", name="s", latitude=lat, longitude=lon, timezone=tz)


def _value_at(frame: pl.DataFrame, stamp: str, column: str = "ghi") -> float:
    at = datetime.fromisoformat(stamp)
    return frame.filter(pl.col("interval_start") == at)[column].item()


def _check_common(read, *, rows: int) -> None:
    validate_frame(read.accepted, WEATHER_SCHEMA, name="weather")
    assert read.summary.balanced
    assert read.summary.rows_read == rows
    assert read.accepted["interval_start"].is_sorted()
    assert read.accepted["interval_start"].is_unique().all()


# Expected values are copied from the files by hand: the row's local stamp converted to UTC and
# shifted to the interval start as the module docstring of solar_sources explains.
@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("relative", "fmt", "rows", "stamp", "ghi"),
    [
        # 2017-01-01 08:00 local standard time (UTC-7) -> 15:00 UTC, GHI 23
        pytest.param(
            "weather/nsrdb_psm3_2017_colorado_30min.csv",
            "psm3",
            17520,
            "2017-01-01T15:00+00:00",
            23.0,
            id="psm3-table",
        ),
        pytest.param(
            "weather/nsrdb_psm4_2023_colorado_30min.csv",
            "psm4",
            17520,
            "2023-01-01T07:00+00:00",
            0.0,
            id="psm4-table",
        ),
        # measured_on 2016-07-01 10:00-07:00 -> 17:00 UTC, GHI 570
        pytest.param(
            "pv/serf-east/serf_east_psm3_data.csv",
            "psm3",
            10000,
            "2016-07-01T17:00+00:00",
            570.0,
            id="serf-psm3-resample",
        ),
        # SURFRAD stamp 2016-01-01 18:00 UTC ends the minute 17:59-18:00
        pytest.param(
            "weather/surfrad_alamosa_20160101_1min.dat",
            "surfrad",
            1440,
            "2016-01-01T17:59+00:00",
            None,
            id="surfrad",
        ),
    ],
)
def test_reader_on_real_file(shared_data, relative, fmt, rows, stamp, ghi):  # noqa: PLR0917
    read = read_weather(shared_data / relative, site=SERF, fmt=fmt, ingested_at=NOW)
    _check_common(read, rows=rows)
    if ghi is not None:
        assert _value_at(read.accepted, stamp) == ghi
    else:
        assert _value_at(read.accepted, stamp) > 400  # clear winter noon at Alamosa


def test_surfrad_stamp_is_end_of_minute(shared_data):
    # row of 18:00 UTC in the file (jday 1, 18:00): dw_solar 566.9 after the end-of-minute shift
    lines = (shared_data / "weather/surfrad_alamosa_20160101_1min.dat").read_text().splitlines()
    row = next(ln.split() for ln in lines[2:] if ln.split()[4:6] == ["18", "0"])
    read = read_weather(
        shared_data / "weather/surfrad_alamosa_20160101_1min.dat",
        site=SERF,
        fmt="surfrad",
        ingested_at=NOW,
    )
    assert _value_at(read.accepted, "2016-01-01T17:59+00:00") == float(row[8])


def test_tmy3_hour_ending_becomes_interval_start():
    site = _site(36.1, -79.95, "America/New_York")
    read = read_weather(TMY3, site=site, fmt="tmy3", ingested_at=NOW)
    _check_common(read, rows=8760)
    # file row "01/01/1988,09:00" (hour ending 09:00 EST) has GHI 46 -> interval 13:00 UTC
    assert _value_at(read.accepted, "1990-01-01T13:00+00:00") == 46.0
    assert read.missing_intervals == 0


@pytest.mark.parametrize(
    ("name", "fmt", "rows"),
    [
        pytest.param("weather/serf_east_psm3_data.csv", "psm3", 10000, id="serf-psm3"),
        pytest.param(
            "weather/nsrdb_psm3_2017_colorado_30min_july_week.csv", "psm3", 336, id="psm3-week"
        ),
        pytest.param(
            "weather/nsrdb_psm4_2023_colorado_30min_july_week.csv", "psm4", 336, id="psm4-week"
        ),
        pytest.param(
            "weather/surfrad_alamosa_20160101_daytime.dat", "surfrad", 540, id="surfrad-daytime"
        ),
    ],
)
def test_reader_on_sample(name, fmt, rows):
    read = read_weather(SAMPLE_DIR / name, site=SERF, fmt=fmt, ingested_at=NOW)
    _check_common(read, rows=rows)
    assert read.quarantined.height == 0


def test_serf_psm3_decomposes_missing_dni_dhi():
    read = read_weather(
        SAMPLE_DIR / "weather/serf_east_psm3_data.csv", site=SERF, fmt="psm3", ingested_at=NOW
    )
    noon = read.accepted.filter(pl.col("interval_start") == datetime(2016, 7, 1, 19, tzinfo=UTC))
    assert flags.DECOMPOSED in noon["flags"].item().to_list()
    assert noon["dni"].item() > 0
    assert noon["dhi"].item() > 0


def _csv(tmp_path: Path, rows: list[tuple[str, float]], name: str = "w.csv") -> Path:
    path = tmp_path / name
    body = "".join(f"{t},{g},{'' if g is None else 0},{'' if g is None else g}\n" for t, g in rows)
    path.write_text("time,ghi,dni,dhi\n" + body)
    return path


def _flags_at(read, stamp: str) -> list[str]:
    at = datetime.fromisoformat(stamp)
    return read.accepted.filter(pl.col("interval_start") == at)["flags"].item().to_list()


def _series(start_hour: int, values: list[float]) -> list[tuple[str, float]]:
    base = datetime(2016, 7, 15, start_hour, tzinfo=UTC)
    return [
        ((base + i * (datetime(2016, 1, 1, 0, 15) - datetime(2016, 1, 1))).isoformat(), v)
        for i, v in enumerate(values)
    ]


def test_gap_flags_next_row_and_counts_missing(tmp_path):
    rows = [r for i, r in enumerate(_series(18, [500, 510, 520, 530, 540])) if i not in (2, 3)]
    read = read_weather(
        _csv(tmp_path, rows), site=SERF, fmt="csv", column_map=OBS_MAP, ingested_at=NOW
    )
    assert read.missing_intervals == 2
    assert flags.GAP_BEFORE in _flags_at(read, "2016-07-15T19:00+00:00")
    assert flags.GAP_BEFORE not in _flags_at(read, "2016-07-15T18:15+00:00")


@pytest.mark.parametrize(
    ("count", "stale"),
    [pytest.param(12, True, id="3h-flagged"), pytest.param(11, False, id="2h45-not-flagged")],
)
def test_stale_ghi(tmp_path, count, stale):
    read = read_weather(
        _csv(tmp_path, _series(16, [600.0] * count + [610.0])),
        site=SERF,
        fmt="csv",
        column_map=OBS_MAP,
        ingested_at=NOW,
    )
    assert (flags.STALE_GHI in _flags_at(read, "2016-07-15T16:00+00:00")) is stale
    assert flags.STALE_GHI not in _flags_at(read, read.accepted["interval_start"][-1].isoformat())


@pytest.mark.parametrize(
    ("hour", "ghi", "flag", "expected"),
    [
        # clear-sky GHI at SERF near solar noon in July is about 1000 W/m^2: bound ~1550
        pytest.param(19, 2000.0, flags.GHI_ABOVE_CLEARSKY, True, id="noon-2000-above"),
        pytest.param(19, 1100.0, flags.GHI_ABOVE_CLEARSKY, False, id="noon-1100-ok"),
        # 06:00 UTC is midnight local: the sun is far below the horizon
        pytest.param(6, 50.0, flags.IRRADIANCE_AT_NIGHT, True, id="night-50"),
        pytest.param(6, 5.0, flags.IRRADIANCE_AT_NIGHT, False, id="night-5-ok"),
    ],
)
def test_sky_flags(tmp_path, hour, ghi, flag, expected):
    read = read_weather(
        _csv(tmp_path, _series(hour, [ghi, ghi / 2])),
        site=SERF,
        fmt="csv",
        column_map=OBS_MAP,
        ingested_at=NOW,
    )
    stamp = f"2016-07-15T{hour:02d}:00+00:00"
    assert (flag in _flags_at(read, stamp)) is expected


def _kw_day() -> list[tuple[str, float]]:
    return _series(14, [0.2, 0.4, 0.6, 0.8, 0.9, 0.8, 0.6, 0.4])


def test_kw_per_m2_day_is_flagged_not_converted(tmp_path):
    read = read_weather(
        _csv(tmp_path, _kw_day()), site=SERF, fmt="csv", column_map=OBS_MAP, ingested_at=NOW
    )
    assert read.flag_counts[flags.GHI_UNIT_SUSPECT] == 8
    assert read.accepted["ghi"].max() == pytest.approx(0.9)


def test_kw_per_m2_day_is_converted_on_request(tmp_path):
    read = read_weather(
        _csv(tmp_path, _kw_day()),
        site=SERF,
        fmt="csv",
        column_map=OBS_MAP,
        ingested_at=NOW,
        convert_kw=True,
    )
    assert read.flag_counts[flags.GHI_CONVERTED] == 8
    assert read.accepted["ghi"].max() == pytest.approx(900.0)


def test_unparseable_rows_and_duplicates(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(
        "time,ghi,dni,dhi\n"
        "2016-07-15T18:00+00:00,500,0,500\n"
        "not-a-time,510,0,510\n"
        "2016-07-15T18:30+00:00,abc,0,1\n"
        "2016-07-15T18:00+00:00,500,0,500\n"  # exact repeat of row 1
        "2016-07-15T18:00+00:00,999,0,999\n"  # same interval, other values
    )
    read = read_weather(path, site=SERF, fmt="csv", column_map=OBS_MAP, ingested_at=NOW)
    assert (read.summary.rows_read, read.summary.accepted) == (5, 1)
    assert (read.summary.quarantined, read.summary.duplicates) == (3, 1)
    got = read.quarantined.select("reason", "file", "row", "field", "value").sort("row")
    expected = pl.DataFrame(
        {
            "reason": ["unparseable_timestamp", "unparseable_value", "conflicting_duplicate"],
            "file": ["bad.csv"] * 3,
            "row": [2, 3, 5],
            "field": ["interval_start", "ghi", "interval_start"],
            "value": [None, "abc", "2016-07-15T18:00:00+00:00"],
        }
    )
    assert_frame_equal(got.drop("value"), expected.drop("value"))
    assert got["value"][1:].to_list() == expected["value"][1:].to_list()
    assert "not-a-time" in got["value"][0]
    assert "row 1" in read.quarantined.sort("row")["detail"][-1]


def test_forecast_rows_keep_issue_and_need_it(tmp_path):
    path = tmp_path / "fc.csv"
    path.write_text(
        "issued_time,valid_time,ghi_wm2,t2m_c,wind10m_ms,tcc_pct\n"
        "2016-07-15T00:00Z,2016-07-15T18:00Z,700,25,2,10\n"
        "2016-07-15T06:00Z,2016-07-15T18:00Z,650,24,2,20\n"
        ",2016-07-15T18:00Z,600,24,2,20\n"
    )
    read = read_weather(
        path, site=SERF, fmt="csv", kind="forecast", column_map=FORECAST_MAP, ingested_at=NOW
    )
    assert read.accepted["kind"].to_list() == ["forecast", "forecast"]
    assert read.accepted["issued_at"].dt.hour().to_list() == [0, 6]
    assert read.accepted["cloud_cover"].to_list() == [10.0, 20.0]
    assert read.quarantined["field"].to_list() == ["issued_at"]


def test_station_map_local_end_labels(tmp_path):
    path = tmp_path / "station.csv"
    path.write_text("timestamp;GHI;DNI;DHI;T_air;WS\n15.07.2016 12:10;800;700;150;28;3\n")
    column_map = load_weather_column_map(REPO_ROOT / "configs/sources/weather_station_example.toml")
    read = read_weather(path, site=SERF, fmt="csv", column_map=column_map, ingested_at=NOW)
    # 12:10 MDT (UTC-6) ends the 10-minute interval that starts 18:00 UTC
    assert read.accepted["interval_start"].to_list() == [datetime(2016, 7, 15, 18, tzinfo=UTC)]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        pytest.param(b"time,ghi\n2016-07-15T18:00Z,5\xe9\n", "not UTF-8", id="latin-1"),
        pytest.param(
            b"time,ghi,dni,dhi\n2016-07-15T18:00Z,5,0,5\n2016-07-15T18:15Z,6",
            "truncated",
            id="truncated",
        ),
    ],
)
def test_bad_files_are_rejected_whole(tmp_path, content, match):
    path = tmp_path / "broken.csv"
    path.write_bytes(content)
    with pytest.raises(InputFileError, match=f"broken.csv.*{match}|{match}.*broken.csv"):
        read_weather(path, site=SERF, fmt="csv", column_map=OBS_MAP, ingested_at=NOW)


def test_unknown_layout_for_psm3_is_rejected(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(InputFileError, match="not an NSRDB file"):
        read_weather(path, site=SERF, fmt="psm3", ingested_at=NOW)


def test_cli_ingest_weather_is_idempotent(evcast_home, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("time,ghi,dni,dhi\n2016-07-15T18:00Z,500,0,500\nnope,1,1,1\n")
    map_file = tmp_path / "map.toml"
    map_file.write_text('interval_start = "time"\nghi = "ghi"\ndni = "dni"\ndhi = "dhi"\n')
    args = [
        "ingest",
        "weather",
        str(path),
        "--site",
        "serf-east",
        "--format",
        "csv",
        "--column-map",
        str(map_file),
        "--json",
    ]
    first = CliRunner().invoke(app, args)
    second = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert json.loads(first.output)["lake"]["inserted"] == 1
    assert json.loads(second.output)["lake"] == {"inserted": 0, "updated": 0, "unchanged": 1}
    lake = read_table(evcast_home / "lake", "weather", WEATHER_SCHEMA).collect()
    assert lake["ghi"].to_list() == [500.0]
    assert read_quarantine(evcast_home / "quarantine", table="weather").collect().height == 1


SAM_HEADER = (
    "Source,Location ID,City,State,Country,Latitude,Longitude,Time Zone,Elevation,"
    "Local Time Zone,Version\n"
    "NSRDB,1,-,-,-,39.74,-105.17,-7,1828,-7,3.2.0\n"
    "Year,Month,Day,Hour,Minute,GHI,DNI,DHI,Temperature,Wind Speed\n"
)


@pytest.mark.parametrize(
    ("second_ghi", "accepted", "quarantined"),
    [
        pytest.param("910", 2, 0, id="pvlib-reader"),
        # a bad cell makes pvlib's typed read fail; the tolerant parser keeps the good row
        pytest.param("abc", 1, 1, id="tolerant-fallback"),
    ],
)
def test_sam_csv_with_metadata(tmp_path, second_ghi, accepted, quarantined):
    path = tmp_path / "psm3.csv"
    path.write_text(
        SAM_HEADER + f"2016,7,15,12,0,900,800,100,25,2\n2016,7,15,12,30,{second_ghi},810,100,25,2\n"
    )
    read = read_weather(path, site=SERF, fmt="psm3", ingested_at=NOW)
    assert (read.summary.accepted, read.summary.quarantined) == (accepted, quarantined)
    # "Time Zone" -7 in the metadata: 12:00 local standard time is 19:00 UTC
    first = read.accepted.row(0, named=True)
    assert first["interval_start"] == datetime(2016, 7, 15, 19, tzinfo=UTC)
    assert (first["ghi"], first["dni"], first["temp_air"]) == (900.0, 800.0, 25.0)


def test_truncated_surfrad_is_rejected(tmp_path, shared_data):
    text = (shared_data / "weather/surfrad_alamosa_20160101_1min.dat").read_text()
    path = tmp_path / "cut.dat"
    path.write_text(text[: len(text) // 2].rsplit(" ", 3)[0])
    with pytest.raises(InputFileError, match=r"'cut\.dat' looks truncated"):
        read_weather(path, site=SERF, fmt="surfrad", ingested_at=NOW)
