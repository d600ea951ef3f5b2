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


def test_port_outside_the_tcp_range_is_rejected_before_listening():
    for port in ("99999", "0", "-1"):
        result = run("--port", port, "--cluster", "dgx-h100:2", "--dry-run")
        assert result.exit_code == 2, result.output
        assert result.output.strip().splitlines() == [f"error: --port {port}: outside 1..65535"]


def test_a_settings_file_reports_every_bad_key_at_once(tmp_path):
    bad = tmp_path / "serve.yaml"
    bad.write_text(
        "colour: blue\n"
        "solver: magic\n"
        "listen: {port: 99999, hots: x}\n"
        "maxBodyBytes: big\n"
        "reservationTTLSeconds: -5\n"
        "kube: {watchTimeoutSeconds: 0}\n"
        "policies: {queue: nosuch, scorerOptions: {nope: 1}}\n"
    )
    result = run("--config", str(bad), "--port", "70000")
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert all(line.startswith("error: ") for line in lines)
    wanted = [
        "--port 70000: outside 1..65535",
        "serve.yaml: colour: unknown setting",
        "serve.yaml: listen.hots: unknown setting",
        "serve.yaml: listen.port: 99999 is outside 1..65535",
        "serve.yaml: solver: expected fast, exact or auto, got 'magic'",
        "serve.yaml: maxBodyBytes: expected an integer, got 'big'",
        "serve.yaml: reservationTTLSeconds: expected a positive number, got -5",
        "serve.yaml: kube.watchTimeoutSeconds: 0 is outside >= 1",
        "serve.yaml: policies.queue: unknown queue policy 'nosuch'",
        "serve.yaml: policies.scorer: scorer policy 'topology' takes no option 'nope'",
    ]
    for text in wanted:
        assert sum(text in line for line in lines) == 1, (text, lines)
    assert len(lines) == len(wanted)
    with pytest.raises(ConfigError) as err:
        parse_config({"colour": 1, "solver": "magic", "policies": "fifo"}, "s.yaml")
    assert err.value.problems == [
        "s.yaml: policies must be a mapping",
        "s.yaml: colour: unknown setting; known: bindBarrierSeconds, bindWorkers, "
        "evictionGracePeriodSeconds, kube, leaderElection, listen, logFormat, maxBodyBytes, "
        "pathPrefix, percentageOfNodesToScore, policies, reservationTTLSeconds, solver, "
        "solverTimeLimitSeconds, tls",
        "s.yaml: solver: expected fast, exact or auto, got 'magic'",
    ]


def test_a_settings_file_that_is_not_yaml_names_its_line(tmp_path):
    bad = tmp_path / "serve.yaml"
    bad.write_text("listen: [1\n")
    result = run("--config", str(bad))
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"error: {bad}:2: not valid YAML: ")
