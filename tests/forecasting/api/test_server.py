"""The API through a real uvicorn server on loopback (HTTP and HTTPS), and ``evcast fetch``."""

from __future__ import annotations

import gc
import ipaddress
import os
import signal
import ssl
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from api_support import SIGNING_KEY, free_port, publish_example, run_server
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner
from uvicorn.importer import import_from_string

from forecasting.api.auth import issue_token
from forecasting.api.main import build_app, create_app_from_env
from forecasting.api.signing import SIGNATURE_HEADER, verify_signature
from forecasting.cli import app as cli
from forecasting.cli.serve import build_server_config
from forecasting.errors import ConfigError
from forecasting.io.forecast_store import open_store, read_audit
from forecasting.settings import Settings

THIS_HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
SITES_TOML = """
[[sites]]
site_id = "site-a"
name = "A"
latitude = 56.0
longitude = -3.0
timezone = "UTC"
grid_limit_kw = 200
other_load_kw = 20
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Settings, str, str]:
    """EVCAST_HOME with a run issued this hour for site-a and a token; a temp sites.toml."""
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "sites.toml").write_text(SITES_TOML)
    monkeypatch.setenv("EVCAST_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EVCAST_CONFIG_DIR", str(tmp_path / "configs"))
    monkeypatch.setenv("EVCAST_SIGNING_KEY", SIGNING_KEY)
    settings = Settings()
    store = open_store(settings.forecast_store_url)
    run_id = publish_example(store, "site-a", issued_at=THIS_HOUR)
    _, token = issue_token(store, sites=["site-a"], now=datetime.now(UTC), expires_at=None)
    store.dispose()
    return settings, run_id, token


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_live_server_serves_signed_forecasts_and_fetch_prints_the_same_body(
    home: tuple[Settings, str, str],
) -> None:
    settings, run_id, token = home
    config = build_server_config(settings, host="127.0.0.1", port=free_port())
    with run_server(config) as url:
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
        response = httpx.get(
            f"{url}/v1/sites/site-a/forecast",
            params={"target": "net"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200
        assert response.json()["run_id"] == run_id
        assert response.json()["stale"] is False
        assert verify_signature(
            response.content, response.headers[SIGNATURE_HEADER], key=SIGNING_KEY.encode()
        )
        remote = CliRunner().invoke(
            cli, ["fetch", "--site", "site-a", "--target", "net", "--url", url, "--token", token]
        )
    local = CliRunner().invoke(cli, ["fetch", "--site", "site-a", "--target", "net"])
    assert remote.exit_code == 0, remote.output
    assert local.exit_code == 0, local.output
    assert remote.stdout.rstrip("\n").encode() == response.content
    assert local.stdout.rstrip("\n").encode() == response.content


def test_live_server_over_tls_with_a_self_signed_certificate(
    home: tuple[Settings, str, str], tmp_path: Path
) -> None:
    settings, run_id, token = home
    cert, key = _self_signed(tmp_path)
    config = build_server_config(
        settings, host="127.0.0.1", port=free_port(), tls_cert=cert, tls_key=key
    )
    with run_server(config) as url:
        assert url.startswith("https://")
        trusted = ssl.create_default_context(cafile=str(cert))
        response = httpx.get(
            f"{url}/v1/sites/site-a/schedule",
            headers={"Authorization": f"Bearer {token}"},
            verify=trusted,
        )
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{url}/healthz")  # an untrusted certificate is refused
        csv = CliRunner().invoke(
            cli,
            [
                "fetch",
                "--site",
                "site-a",
                "--target",
                "headroom",
                "--format",
                "csv",
                "--url",
                url,
                "--token",
                token,
                "--ca-cert",
                str(cert),
                "--from",
                THIS_HOUR.isoformat(),
                "--to",
                (THIS_HOUR + timedelta(hours=1)).isoformat(),
            ],
        )
    assert response.status_code == 200
    assert response.json()["run_id"] == run_id
    assert csv.exit_code == 0, csv.output
    lines = csv.stdout.strip().splitlines()
    assert lines[0].startswith("site_id,run_id,target,stale,fallback,interval_start")
    assert len(lines) == 5, (
        csv.stdout,
        response.text[:3000],
    )  # header and four 15-minute intervals
    assert all(run_id in line for line in lines[1:])


def test_tls_needs_both_files(home: tuple[Settings, str, str], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="both --tls-cert and --tls-key"):
        build_server_config(home[0], host="127.0.0.1", port=1, tls_cert=tmp_path / "c.pem")


def test_fetch_refuses_a_tampered_or_unsigned_response(
    home: tuple[Settings, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, _, token = home
    config = build_server_config(settings, host="127.0.0.1", port=free_port())
    monkeypatch.setenv("EVCAST_SIGNING_KEY", "a-different-key")  # what the client expects
    with run_server(config) as url:
        result = CliRunner().invoke(
            cli, ["fetch", "--site", "site-a", "--url", url, "--token", token]
        )
    assert result.exit_code != 0
    assert "signature" in str(result.exception)


def test_serve_uses_uvloop_and_httptools_and_an_app_factory_for_several_workers(
    home: tuple[Settings, str, str],
) -> None:
    one = build_server_config(home[0], host="127.0.0.1", port=free_port())
    one.load()
    assert one.http_protocol_class.__name__ == "HttpToolsProtocol"
    loop = one.get_loop_factory()()
    loop.close()
    assert type(loop).__module__.startswith("uvloop")
    assert one.timeout_graceful_shutdown == 10  # a stalled connection cannot hold a worker
    two = build_server_config(home[0], host="127.0.0.1", port=free_port(), workers=2)
    assert (two.app, two.factory, two.workers) == (
        "forecasting.api.main:create_app_from_env",
        True,
        2,
    )
    assert import_from_string(two.app) is create_app_from_env
    frozen = gc.get_freeze_count()
    api = build_app(Settings())  # what each worker's factory does, short of freezing the heap
    assert gc.get_freeze_count() == frozen  # building an app leaves the collector alone
    assert {"/healthz", "/v1/sites/{site_id}/forecast"} <= set(api.openapi()["paths"])
    help_text = CliRunner().invoke(cli, ["serve", "--help"], env={"COLUMNS": "200"}).stdout
    assert "per worker" in help_text


def _worker_pids(supervisor: int) -> list[int]:
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return [
        int(pid)
        for pid in children
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()  # not the resource tracker
    ]


def _wait_until_serving(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30  # two workers import the app in parallel on a busy machine
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    msg = f"evcast serve --workers 2 did not start (exit status {server.poll()})"
    raise RuntimeError(msg)


@pytest.mark.slow
def test_two_workers_serve_and_append_to_one_audit_log(home: tuple[Settings, str, str]) -> None:
    settings, run_id, token = home
    port = free_port()
    command = [sys.executable, "-m", "forecasting", "serve", "--port", str(port), "--workers", "2"]
    server = subprocess.Popen(command, env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(url, server)
        workers = _worker_pids(server.pid)

        def fetch(_: int) -> tuple[int, str]:  # a new connection each: both workers accept
            response = httpx.get(
                f"{url}/v1/sites/site-a/forecast", headers={"Authorization": f"Bearer {token}"}
            )
            return response.status_code, response.headers["x-evcast-run-id"]

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(fetch, range(40)))
    finally:
        server.terminate()  # graceful: each worker flushes its audit buffer as it stops
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    assert len(workers) == 2
    assert set(answers) == {(200, run_id)}
    store = open_store(settings.forecast_store_url)
    audit = read_audit(store)
    store.dispose()
    assert audit.height == 40
    assert set(audit.select("status", "run_id").rows()) == {(200, run_id)}


def test_serve_with_several_workers_reports_a_missing_sites_file_once_and_exits(
    home: tuple[Settings, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVCAST_CONFIG_DIR", str(tmp_path / "nowhere"))
    port = free_port()
    command = [sys.executable, "-m", "forecasting", "serve", "--port", str(port), "--workers", "2"]
    server = subprocess.Popen(
        command, env=os.environ.copy(), stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        _, stderr = server.communicate(timeout=30)  # the parent checks before any worker starts
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)  # the supervisor and its workers
        server.communicate()
        raise
    assert server.returncode == 2
    lines = stderr.decode().strip().splitlines()
    assert lines[-1].startswith("error: config file ")
    assert "sites.toml' does not exist" in lines[-1]
    assert "Traceback" not in stderr.decode()
