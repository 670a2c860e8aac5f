"""Each validation rule on small hand-made ChargePlace rows written to real files."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from forecasting.config import SitesConfig, load_sites
from forecasting.ingest import validate_sessions as rules
from forecasting.ingest.sessions import SessionsRead, read_sessions
from forecasting.settings import REPO_ROOT

HEADER = "CP ID,Connector,Start Date,Start Time,End Date,End Time,Total kWh,Site,Model"
BROXDEN = '"Broxden Park & Ride, Perth"'
RAPID = "APT Triple Rapid Charger"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
SITES = load_sites(REPO_ROOT / "configs" / "sites.toml")


def row(
    start: str = "01/07/2018,10:00",
    end: str = "01/07/2018,11:00",
    kwh: str = "20.5",
    *,
    cp: str = "50245",
    connector: str = "1",
    site: str = BROXDEN,
    model: str = RAPID,
) -> str:
    return f"{cp},{connector},{start},{end},{kwh},{site},{model}"


def read_rows(
    tmp_path: Path, *rows: str, sites: SitesConfig = SITES, name: str = "export.csv"
) -> SessionsRead:
    path = tmp_path / name
    path.write_text("\r\n".join([HEADER, *rows]) + "\r\n", encoding="utf-8")
    read = read_sessions(path, fmt="chargeplace", sites=sites, ingested_at=NOW)
    read.summary.check_balance()
    return read


def reasons(read: SessionsRead) -> list[tuple[int, str]]:
    return list(read.quarantine.select("row", "reason").iter_rows())


@pytest.mark.parametrize(
    ("bad", "reason", "field"),
    [
        pytest.param(row(end=","), rules.MISSING_FIELD, "plug_out_at", id="no-end"),
        pytest.param(row(kwh=""), rules.MISSING_FIELD, "energy_kwh", id="no-energy"),
        pytest.param(row(site=""), rules.MISSING_FIELD, "site_id", id="no-site"),
        pytest.param(row(cp=""), rules.MISSING_FIELD, "station_id", id="no-station"),
        pytest.param(row(kwh='"12,5"'), rules.UNPARSEABLE_VALUE, "energy_kwh", id="bad-number"),
        pytest.param(
            row(start="31/02/2018,10:00"), rules.UNPARSEABLE_VALUE, "plug_in_at", id="bad-date"
        ),
        pytest.param(row(kwh="0"), rules.NONPOSITIVE_ENERGY, "energy_kwh", id="zero-energy"),
        pytest.param(
            row(kwh="-1394.711"), rules.NONPOSITIVE_ENERGY, "energy_kwh", id="negative-energy"
        ),
        pytest.param(
            row(end="01/07/2018,09:00"), rules.UNPLUG_BEFORE_PLUGIN, "plug_out_at", id="reversed"
        ),
        pytest.param(
            row(end="01/07/2018,10:00"), rules.ZERO_DURATION, "plug_out_at", id="zero-duration"
        ),
        pytest.param(
            row(end="03/07/2018,10:01"), rules.IMPLAUSIBLY_LONG, "plug_out_at", id="over-48h"
        ),
        # 50 kW x (10 + 1) min x 1.05 = 9.625 kWh at most
        pytest.param(
            row(end="01/07/2018,10:10", kwh="9.7"),
            rules.ENERGY_ABOVE_CAPABILITY,
            "energy_kwh",
            id="above-rated-power",
        ),
        # unknown model: the 150 kWh cap applies
        pytest.param(
            row(end="02/07/2018,10:00", kwh="151", model="Mystery Charger"),
            rules.ENERGY_ABOVE_CAPABILITY,
            "energy_kwh",
            id="above-cap",
        ),
        pytest.param(
            row(site='"***TEST SITE*** Charge Your Car HQ"'),
            rules.EXCLUDED_SITE,
            "site_id",
            id="test-site",
        ),
    ],
)
def test_row_rule_quarantines_with_reason(
    tmp_path: Path, bad: str, reason: str, field: str
) -> None:
    read = read_rows(tmp_path, row(start="05/07/2018,10:00", end="05/07/2018,10:30"), bad)
    assert read.sessions["source"].to_list() == ["export.csv:1"]
    assert reasons(read) == [(2, reason)]
    assert read.quarantine["field"].to_list() == [field]
    assert read.quarantine["file"].to_list() == ["export.csv"]
    raw = json.loads(read.quarantine["raw"][0])
    assert raw["CP ID"] == (bad.split(",", maxsplit=1)[0] or None)  # empty reads as null
    assert read.summary.by_reason == {reason: 1}


def test_energy_just_within_capability_is_accepted(tmp_path: Path) -> None:
    read = read_rows(tmp_path, row(end="01/07/2018,10:10", kwh="9.6"))
    assert read.quarantine.height == 0
    assert read.sessions["max_power_kw"].to_list() == [50.0]


def test_unknown_site_is_discovered_unless_strict(tmp_path: Path) -> None:
    unknown = row(site='"Nowhere Car Park, Perth"')
    lenient = read_rows(tmp_path, unknown)
    assert lenient.sessions["site_id"].to_list() == ["nowhere-car-park-perth"]
    assert lenient.discovered_sites.select("site_id", "timezone").rows() == [
        ("nowhere-car-park-perth", "Europe/London")
    ]
    strict = read_rows(tmp_path, unknown, sites=SITES.model_copy(update={"strict": True}))
    assert reasons(strict) == [(1, rules.UNKNOWN_SITE)]
    assert strict.discovered_sites.height == 0


def test_site_aliases_map_spellings_to_one_site(tmp_path: Path) -> None:
    read = read_rows(
        tmp_path,
        row(site="Broxden Park & Ride"),
        row(start="02/07/2018,10:00", end="02/07/2018,11:00", site='" Broxden Park & Ride, Perth"'),
    )
    assert read.sessions["site_id"].to_list() == ["broxden-park-ride-perth"] * 2
    assert read.discovered_sites.height == 0


def test_exact_duplicates_are_dropped_and_counted(tmp_path: Path) -> None:
    read = read_rows(tmp_path, row(), row(), row())
    assert (read.summary.accepted, read.summary.duplicates, read.summary.quarantined) == (1, 2, 0)
    assert read.sessions["source"].to_list() == ["export.csv:1"]


def test_later_overlapping_session_is_quarantined_naming_both(tmp_path: Path) -> None:
    read = read_rows(
        tmp_path,
        row(start="01/07/2018,10:30", end="01/07/2018,11:30"),
        row(start="01/07/2018,10:00", end="01/07/2018,11:00"),
        row(start="01/07/2018,10:30", end="01/07/2018,11:30", connector="2"),
        row(start="01/07/2018,11:00", end="01/07/2018,11:20", kwh="5"),
    )
    assert reasons(read) == [(1, rules.OVERLAPPING_SESSION)]
    detail = read.quarantine["detail"][0]
    assert "export.csv:1" in detail
    assert "export.csv:2" in detail
    assert sorted(read.sessions["source"].to_list()) == [
        "export.csv:2",
        "export.csv:3",
        "export.csv:4",
    ]


def test_same_start_with_other_energy_is_an_overlap_not_a_duplicate(tmp_path: Path) -> None:
    read = read_rows(tmp_path, row(kwh="20.5"), row(kwh="21.0"))
    assert reasons(read) == [(2, rules.OVERLAPPING_SESSION)]
    assert read.summary.duplicates == 0


def _known(read: SessionsRead) -> pl.LazyFrame:
    return read.sessions.lazy()


def test_overlap_with_sessions_already_stored(tmp_path: Path) -> None:
    first = read_rows(tmp_path, row(), name="a.csv")
    (tmp_path / "b.csv").write_text(
        "\n".join(
            [
                HEADER,
                row(),  # the same session again: not an overlap with itself
                row(start="01/07/2018,10:30", end="01/07/2018,12:00"),  # inside the stored one
                row(start="01/07/2018,09:30", end="01/07/2018,10:15"),  # runs into it
                row(start="01/07/2018,11:00", end="01/07/2018,11:30", kwh="5"),  # starts at its end
            ]
        )
        + "\n"
    )
    second = read_sessions(
        tmp_path / "b.csv",
        fmt="chargeplace",
        sites=SITES,
        ingested_at=NOW,
        known_sessions=_known(first),
    )
    assert reasons(second) == [(2, rules.OVERLAPPING_SESSION), (3, rules.OVERLAPPING_SESSION)]
    # the stored session, read again as b.csv:1, is the one they overlap
    assert all("overlaps session b.csv:1 " in d for d in second.quarantine["detail"])
    assert second.sessions["source"].to_list() == ["b.csv:1", "b.csv:4"]


def test_session_id_is_deterministic(tmp_path: Path) -> None:
    one = read_rows(tmp_path, row(), name="x.csv")
    two = read_rows(tmp_path, row(start="05/07/2018,10:00", end="05/07/2018,10:30"), row())
    assert one.sessions["session_id"][0] == two.sessions["session_id"][1]
    assert one.sessions["session_id"][0] != two.sessions["session_id"][0]


def test_accepted_row_values(tmp_path: Path) -> None:
    read = read_rows(tmp_path, row(start="01/07/2018,10:00", end="01/07/2018,11:00"))
    expected = pl.DataFrame(
        {
            "site_id": ["broxden-park-ride-perth"],
            "station_id": ["50245"],
            "connector_id": ["1"],
            # BST: 10:00 local is 09:00 UTC
            "plug_in_at": [datetime(2018, 7, 1, 9, tzinfo=UTC)],
            "plug_out_at": [datetime(2018, 7, 1, 10, tzinfo=UTC)],
            "energy_kwh": [20.5],
            "source": ["export.csv:1"],
        }
    ).with_columns(pl.col("plug_in_at", "plug_out_at").dt.cast_time_unit("us"))
    assert_frame_equal(read.sessions.select(expected.columns), expected)
    assert read.sessions["attributes"].to_list() == [None]
