"""Whole-file rejections: encoding, truncation, layout. Nothing of a rejected file is loaded."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from forecasting.config import load_sites
from forecasting.errors import InputFileError
from forecasting.ingest.sessions import read_sessions
from forecasting.settings import REPO_ROOT

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SITES = load_sites(REPO_ROOT / "configs" / "sites.toml")
HEADER = b"CP ID,Connector,Start Date,Start Time,End Date,End Time,Total kWh,Site,Model\r\n"
GOOD = (
    b"50245,1,01/07/2018,10:00,01/07/2018,11:00,20.5,"
    b'"Broxden Park & Ride, Perth",APT 22kW Dual Outlet\r\n'
)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        pytest.param(
            HEADER + GOOD + GOOD.replace(b"Broxden", b"Br\xf6xden"),
            r"'export.csv' is not UTF-8: byte 0xf6 at offset \d+ \(line 3\)",
            id="latin-1-byte",
        ),
        pytest.param(
            HEADER + GOOD + GOOD[:60],
            "'export.csv' looks truncated: a quoted field is never closed",
            id="cut-mid-quote",
        ),
        pytest.param(
            HEADER + GOOD + GOOD[:20],
            r"'export.csv' looks truncated: its last line \(line 3\) has 4 of 9 fields",
            id="cut-mid-line",
        ),
        pytest.param(b"", "'export.csv' is empty", id="empty"),
        pytest.param(
            b"Site,Energy\r\nA,1\r\n",
            r"lacks columns \['CP ID', 'Connector'",
            id="other-layout",
        ),
    ],
)
def test_bad_csv_file_is_rejected_whole(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(content)
    with pytest.raises(InputFileError, match=match):
        read_sessions(path, fmt="chargeplace", sites=SITES, ingested_at=NOW)


def test_file_without_final_newline_is_complete(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(HEADER + GOOD.rstrip())
    read = read_sessions(path, fmt="chargeplace", sites=SITES, ingested_at=NOW)
    assert read.summary.accepted == 1


@pytest.mark.parametrize(
    ("content", "match"),
    [
        pytest.param(
            b'[{"connectionTime": "Sat, 01 May 2021 20:42:47 GMT", "kWhDel',
            r"'acn.json' is not complete JSON \(Unterminated string .* line 1",
            id="cut-mid-json",
        ),
        pytest.param(b'{"sessions": 3}', "is not an ACN-Data export", id="not-a-list"),
    ],
)
def test_bad_acn_file_is_rejected_whole(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "acn.json"
    path.write_bytes(content)
    with pytest.raises(InputFileError, match=match):
        read_sessions(path, fmt="acn", sites=SITES, ingested_at=NOW)


def test_acn_bad_values_are_quarantined_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "acn.json"
    path.write_text(
        '{"_items": [{"connectionTime": "yesterday", "disconnectTime": "Sat, 01 May 2021 '
        '21:32:12 GMT", "kWhDelivered": 3.2, "siteID": "0002", "stationID": "2-39-81-4550", '
        '"timezone": "America/Los_Angeles"}, {"connectionTime": "Sat, 01 May 2021 20:42:47 GMT",'
        ' "disconnectTime": "Sat, 01 May 2021 21:32:12 GMT", "kWhDelivered": "lots", '
        '"siteID": "0002", "stationID": "2-39-81-4550", "timezone": "America/Los_Angeles"}]}',
        encoding="utf-8",
    )
    read = read_sessions(path, fmt="acn", sites=SITES, ingested_at=NOW)
    assert read.quarantine.select("row", "reason", "field", "value").rows() == [
        (1, "unparseable_value", "plug_in_at", "yesterday"),
        (2, "unparseable_value", "energy_kwh", "lots"),
    ]
