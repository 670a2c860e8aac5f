"""Cut the bundled solar sample from ../shared/data (deterministic: fixed rows, no randomness).

Run from the repository root: ``.venv/bin/python data/sample/make_solar_sample.py``.
Lines are copied byte for byte, so the sample keeps every quirk of the source files.
See ``SOLAR_README.md`` for sources and licences.
"""

from __future__ import annotations

from pathlib import Path

SAMPLE = Path(__file__).resolve().parent
SHARED = SAMPLE.parent.parent.parent / "shared" / "data"


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def _write(target: Path, lines: list[str]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(lines), encoding="utf-8")
    print(f"wrote {target.relative_to(SAMPLE)}: {len(lines)} lines")


def _first_week_of_july(path: Path) -> list[str]:
    """Return the header plus the NSRDB rows of 1-7 July (Month, Day are fields 3, 4)."""
    lines = _lines(path)
    keep = [ln for ln in lines[1:] if ln.split(",")[2] == "7" and int(ln.split(",")[3]) <= 7]
    return [lines[0], *keep]


def _surfrad_daytime(path: Path) -> list[str]:
    """Return the two SURFRAD header lines plus 13:00-21:59 UTC (hour is the 5th field)."""
    lines = _lines(path)
    return lines[:2] + [ln for ln in lines[2:] if 13 <= int(ln.split()[4]) <= 21]


def main() -> None:
    """Write data/sample/weather/* and data/sample/pv/*."""
    serf = SHARED / "pv" / "serf-east"
    _write(
        SAMPLE / "pv" / "serf_east_15min_ac_power.csv",
        _lines(serf / "serf_east_15min_ac_power.csv"),
    )
    _write(SAMPLE / "weather" / "serf_east_psm3_data.csv", _lines(serf / "serf_east_psm3_data.csv"))
    weather = SHARED / "weather"
    for name in ("nsrdb_psm3_2017_colorado_30min.csv", "nsrdb_psm4_2023_colorado_30min.csv"):
        _write(
            SAMPLE / "weather" / name.replace(".csv", "_july_week.csv"),
            _first_week_of_july(weather / name),
        )
    _write(
        SAMPLE / "weather" / "surfrad_alamosa_20160101_daytime.dat",
        _surfrad_daytime(weather / "surfrad_alamosa_20160101_1min.dat"),
    )


if __name__ == "__main__":
    main()
