"""``phalanx serve`` argument and settings errors, and the settings file."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from phalanx.extender.cli import command
from phalanx.extender.config import ConfigError, parse_config


def run(*argv: str):
    return CliRunner().invoke(command, list(argv))


def test_dry_run_needs_a_cluster_and_vice_versa():
    result = run("--dry-run")
    assert result.exit_code == 2 and "error: --dry-run and --cluster go together" in result.output
    result = run("--cluster", "dgx-h100:2")
    assert result.exit_code == 2


def test_bad_cluster_and_bad_settings_file(tmp_path):
    result = run("--cluster", "no-such-preset:3", "--dry-run")
    assert result.exit_code == 2 and "error: --cluster no-such-preset:3" in result.output
    bad = tmp_path / "serve.yaml"
    bad.write_text("listen: {port: 99999}\n")
    result = run("--config", str(bad), "--cluster", "dgx-h100:2", "--dry-run")
    assert result.exit_code == 2 and "listen.port: 99999 is outside 1..65535" in result.output
    bad.write_text("policies: {queue: nosuch}\n")
    result = run("--config", str(bad), "--cluster", "dgx-h100:2", "--dry-run")
    assert result.exit_code == 2 and "nosuch" in result.output
    assert "Traceback" not in result.output


def test_settings_parse_and_name_bad_fields():
    cfg = parse_config(
        {
            "listen": {"port": 9443},
            "tls": {
                "certFile": "c.pem",
                "keyFile": "k.pem",
                "clientCAFile": "ca.pem",
                "requireClientCert": True,
            },
            "policies": {"queue": "priority", "preemption": None},
            "reservationTTLSeconds": 120,
        }
    )
    assert cfg.port == 9443 and cfg.tls.require_client_cert and cfg.policies.preemption is None
    assert cfg.reservation_ttl_s == 120.0
    for doc, message in [
        ({"colour": 1}, "colour: unknown setting"),
        ({"tls": {"certFile": "c.pem"}}, "certFile and tls.keyFile"),
        ({"tls": {"requireClientCert": True}}, "needs tls.clientCAFile"),
        ({"solver": "magic"}, "solver"),
        ({"maxBodyBytes": "big"}, "maxBodyBytes: expected an integer"),
        ({"kube": {"watchTimeoutSeconds": 0}}, "kube.watchTimeoutSeconds"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_config(doc)
