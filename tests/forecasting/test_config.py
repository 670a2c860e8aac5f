from __future__ import annotations

from pathlib import Path

import pytest

from forecasting.config import PVSystem, load_sites, slugify
from forecasting.errors import ConfigError
from forecasting.settings import REPO_ROOT


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("Broxden Park & Ride, Perth", "broxden-park-ride-perth", id="issue-example"),
        pytest.param(" Canal Street 3rd floor ", "canal-street-3rd-floor", id="trim"),
        pytest.param("***TEST SITE*** Charge", "test-site-charge", id="symbols"),
    ],
)
def test_slugify(name: str, expected: str) -> None:
    assert slugify(name) == expected


def test_repo_sites_config_loads() -> None:
    sites = load_sites(REPO_ROOT / "configs" / "sites.toml")
    assert sites.sites, "configs/sites.toml should configure at least one site"
    assert len({s.site_id for s in sites.sites}) == len(sites.sites)


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sites.toml"
    path.write_text(
        '[[sites]]\nsite_id = "a"\nname = "A"\nlatitude = 1\nlongitude = 2\n'
        'timezone = "Europe/London"\ngrid_limt_kw = 5\n'
    )
    with pytest.raises(ConfigError, match="grid_limt_kw"):
        load_sites(path)


def test_unknown_timezone_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sites.toml"
    path.write_text(
        '[[sites]]\nsite_id = "a"\nname = "A"\nlatitude = 1\nlongitude = 2\n'
        'timezone = "Mars/Base"\n'
    )
    with pytest.raises(ConfigError, match="unknown time zone 'Mars/Base'"):
        load_sites(path)


@pytest.mark.parametrize(
    ("ac_capacity_kw", "expected"),
    [pytest.param(5.4, 5.4, id="inverter-limit"), pytest.param(None, 6.3, id="dc-when-unset")],
)
def test_pv_ac_limit(ac_capacity_kw: float | None, expected: float) -> None:
    pv = PVSystem(capacity_kw=6.3, ac_capacity_kw=ac_capacity_kw, tilt=45, azimuth=158)
    assert pv.ac_limit_kw == expected
