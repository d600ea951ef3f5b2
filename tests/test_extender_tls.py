"""TLS with a required client certificate, through the same settings ``phalanx serve`` uses."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from phalanx.extender.app import ExtenderApp
from phalanx.extender.config import ServeConfig, TlsConfig
from phalanx.extender.runtime import DryRunBackend, planner_factory
from phalanx.extender.server import uvicorn_config
from phalanx.topology.presets import cluster_preset


def _cert(name: str, issuer_key, issuer_name, ca: bool, key=None):
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return key, builder.sign(issuer_key or key, hashes.SHA256())


def _write(path: Path, key, cert) -> tuple[str, str]:
    key_path, cert_path = path.with_suffix(".key"), path.with_suffix(".crt")
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(key_path), str(cert_path)


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, str]:
    ca_key, ca = _cert("phalanx-ca", None, None, ca=True)
    server_key, server = _cert("phalanx", ca_key, ca.subject, ca=False)
    client_key, client = _cert("kube-scheduler", ca_key, ca.subject, ca=False)
    _, ca_path = _write(tmp_path / "ca", ca_key, ca)
    server_key_path, server_path = _write(tmp_path / "server", server_key, server)
    client_key_path, client_path = _write(tmp_path / "client", client_key, client)
    return {
        "ca": ca_path,
        "server_key": server_key_path,
        "server": server_path,
        "client_key": client_key_path,
        "client": client_path,
    }


def test_client_certificate_is_required(pki):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = ServeConfig(
        host="127.0.0.1",
        port=port,
        tls=TlsConfig(pki["server"], pki["server_key"], pki["ca"], require_client_cert=True),
    )
    backend = DryRunBackend(planner_factory(config)(cluster_preset("dgx-h100:2")))
    server = uvicorn.Server(uvicorn_config(ExtenderApp(backend), config, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        url = f"https://127.0.0.1:{port}/healthz"
        with pytest.raises((httpx.HTTPError, ssl.SSLError)):
            httpx.get(url, verify=ssl.create_default_context(cafile=pki["ca"])).raise_for_status()
        context = ssl.create_default_context(cafile=pki["ca"])
        context.load_cert_chain(pki["client"], pki["client_key"])
        assert httpx.get(url, verify=context).json() == {"status": "ok"}
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
