"""`vigil serve --tls-cert --tls-key --tls-client-ca`: mutual TLS, in a real process on
loopback: a client without a certificate from the CA is refused at the handshake, one
with it is answered (and still needs its token on /v1)."""

from __future__ import annotations

import datetime as dt
import os
import ssl
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.api.conftest import free_port
from tests.tools import HANG_GUARD, ROOT, Watched


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
          issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool, server: bool = False
          ) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=1))
               .not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        import ipaddress

        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(folder: Path) -> dict[str, Path]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = _cert("test CA", ca_key, ca_name, ca_key, ca=True)
    out: dict[str, Path] = {"ca": folder / "ca.pem"}
    out["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name, server in (("server", True), ("client", False)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(name, key, ca_name, ca_key, ca=False, server=server)
        out[f"{name}_cert"] = folder / f"{name}.pem"
        out[f"{name}_key"] = folder / f"{name}.key.pem"
        out[f"{name}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out[f"{name}_key"].write_bytes(_pem(key))
    return out


@pytest.mark.slow
def test_mutual_tls(tmp_path: Path) -> None:
    files = _write(tmp_path)
    port = free_port()
    (tmp_path / "none.toml").write_text("")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VIGIL_CONFIG": str(tmp_path / "none.toml"),
           "VIGIL_DB": str(tmp_path / "pvdb.duckdb"),
           "VIGIL_TOKENS_DB": str(tmp_path / "tokens.sqlite3"),
           "VIGIL_REQUESTS_DB": str(tmp_path / "requests.duckdb"),
           "VIGIL_FLEET_DB": str(tmp_path / "fleet.duckdb"),
           "VIGIL_DECISION_LOG": str(tmp_path / "decisions.duckdb")}
    with Watched([sys.executable, "-m", "engine.cli.main", "serve", "--port", str(port),
                  "--tls-cert", files["server_cert"], "--tls-key", files["server_key"],
                  "--tls-client-ca", files["ca"]], env=env, cwd=ROOT) as child:
        child.wait_for("client certificates required")
        trusted = ssl.create_default_context(cafile=str(files["ca"]))
        mutual = ssl.create_default_context(cafile=str(files["ca"]))
        mutual.load_cert_chain(str(files["client_cert"]), str(files["client_key"]))
        url = f"https://127.0.0.1:{port}"
        deadline = time.monotonic() + HANG_GUARD
        while True:
            try:
                answer = httpx.get(f"{url}/healthz", verify=mutual, timeout=HANG_GUARD)
                break
            except httpx.ConnectError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert answer.status_code == 200
        assert httpx.get(f"{url}/v1/hosts", verify=mutual).status_code == 401
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            httpx.get(f"{url}/healthz", verify=trusted, timeout=HANG_GUARD).raise_for_status()
