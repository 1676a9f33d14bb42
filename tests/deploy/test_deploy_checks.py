"""`fl-poison deploy certs|up|down` refuse bad input with one line and exit 2 before any process starts.

``spawn`` is replaced by a function that fails the test: each refusal must
come from the checks made before the first Flower process, never from a
process that started and failed.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

import fl_poison.deploy as deploy
from fl_poison.cli import main


@pytest.fixture(autouse=True)
def no_processes(monkeypatch):
    def spawn(cmd, *a, **kw):
        raise AssertionError(f"a process was started: {cmd[:2]}")

    monkeypatch.setattr(deploy, "spawn", spawn)


def _run(capsys, *argv: str) -> tuple[int, list[str]]:
    code = main(["deploy", *argv])
    return code, capsys.readouterr().err.strip().splitlines()


def _certs(d: Path, n: int = 2) -> Path:
    assert main(["deploy", "certs", str(d), "-n", str(n)]) == 0
    return d / "certs"


def _refused(capsys, *argv: str, says: tuple[str, ...]) -> str:
    code, err = _run(capsys, *argv)
    assert code == 2 and len(err) == 1 and err[0].startswith("fl-poison: error: "), (code, err)
    for part in says:
        assert part in err[0], err[0]
    return err[0]


def test_certs_a_second_time_keeps_the_ca_and_keys_unless_forced(tmp_path, capsys):
    certs = _certs(tmp_path / "fed")
    before = {p.name: p.read_bytes() for p in certs.iterdir()}
    _refused(capsys, "certs", str(tmp_path / "fed"), "-n", "2", says=("already holds ca.crt", "--force"))
    assert {p.name: p.read_bytes() for p in certs.iterdir()} == before
    assert main(["deploy", "certs", str(tmp_path / "fed"), "-n", "1", "--force"]) == 0
    assert (certs / "ca.crt").read_bytes() != before["ca.crt"]
    assert sorted(p.name for p in certs.glob("node*")) == ["node0.key", "node0.key.pub"]  # no stale node1 keys


def test_up_refuses_a_ca_from_another_federation_naming_the_certificate(tmp_path, capsys):
    certs = _certs(tmp_path / "fed")
    shutil.copy(_certs(tmp_path / "other") / "ca.crt", certs / "ca.crt")
    _refused(capsys, "up", str(tmp_path / "fed"), "-n", "2", "--port", "19611",
             says=(f"{certs / 'server.pem'} was not issued by {certs / 'ca.crt'}",))
    assert not (tmp_path / "fed" / "logs").exists()


def test_up_refuses_a_server_key_that_is_not_the_certificates(tmp_path, capsys):
    certs = _certs(tmp_path / "fed")
    shutil.copy(_certs(tmp_path / "other") / "server.key", certs / "server.key")
    _refused(capsys, "up", str(tmp_path / "fed"), "-n", "2", "--port", "19611",
             says=(f"{certs / 'server.key'} is not the key of {certs / 'server.pem'}",))
    (certs / "server.key").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    _refused(capsys, "up", str(tmp_path / "fed"), "-n", "2", "--port", "19611",
             says=(f"{certs / 'server.key'} is not an unencrypted PEM private key",))


def test_up_refuses_a_corrupt_or_mismatched_node_key_naming_it(tmp_path, capsys):
    certs = _certs(tmp_path / "fed")
    (certs / "node1.key").write_text("garbage\n")
    _refused(capsys, "up", str(tmp_path / "fed"), "-n", "2", "--port", "19611",
             says=(f"{certs / 'node1.key'} is not an unencrypted OpenSSH private key",))
    shutil.copy(_certs(tmp_path / "other") / "node1.key", certs / "node1.key")
    _refused(capsys, "up", str(tmp_path / "fed"), "-n", "2", "--port", "19611",
             says=(f"{certs / 'node1.key.pub'} is not the public half of {certs / 'node1.key'}",))


def test_up_refuses_more_nodes_than_keys(tmp_path, capsys):
    _certs(tmp_path / "fed", 2)
    _refused(capsys, "up", str(tmp_path / "fed"), "-n", "3", "--port", "19611",
             says=("--nodes 3", "keys for 2 SuperNode(s)", "-n 3 --force"))


def test_up_refuses_a_port_in_use_by_the_superlink_or_a_supernode(tmp_path, capsys):
    _certs(tmp_path / "fed", 2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        _refused(capsys, "up", str(tmp_path / "fed"), "-n", "2", "--port", str(port),
                 says=(f"--port {port}: 127.0.0.1:{port} (the SuperLink's) is already in use",))
        if port - 101 >= 1:
            _refused(capsys, "up", str(tmp_path / "fed"), "-n", "2", "--port", str(port - 101),
                     says=(f"127.0.0.1:{port} (SuperNode node1's, --port + 101) is already in use",))


@pytest.mark.parametrize("argv, says", [
    (("up", "{d}", "--port", "99999"), "invalid value for '--port': 99999 — a port 1..65535"),
    (("up", "{d}", "--port", "0"), "invalid value for '--port': 0"),
    (("up", "{d}", "-n", "3", "--port", "65434"), "the SuperNodes listen on --port + 100 + I, up to 65536"),
    (("certs", "{d}", "--host", ""), "invalid value for '--host': ''"),
    (("up", "{d}", "--host", "bad host"), "invalid value for '--host': 'bad host'"),
    (("up", "{d}", "-n", "0"), "invalid value for '--nodes': 0"),
    (("down", "{d}"), "{d}/federation.json not found: no federation was started in {d}"),
])
def test_bad_options_are_one_line_and_touch_nothing(tmp_path, capsys, argv, says):
    d = str(tmp_path / "fed")
    _refused(capsys, *(a.format(d=d) for a in argv), says=(says.format(d=d),))
    assert not (tmp_path / "fed").exists()


@pytest.mark.parametrize("content, says", [
    ('{"address": ', "is not valid JSON"),
    ('["superlink", 12]', "is not a federation record"),
    ('{"address": "127.0.0.1:9", "pids": {"superlink": "12"}}', "is not a federation record"),
    ('{"address": "127.0.0.1:9", "pids": {"superlink": true}}', "is not a federation record"),
])
@pytest.mark.parametrize("action", ["down", "up"])
def test_a_corrupt_federation_json_is_one_line(tmp_path, capsys, content, says, action):
    d = tmp_path / "fed"
    d.mkdir()
    (d / deploy.PID_FILE).write_text(content)
    _refused(capsys, action, str(d), "--port", "19611", says=(f"{(d / deploy.PID_FILE).resolve()} {says}",))
    assert (d / deploy.PID_FILE).read_text() == content


def test_up_refuses_while_its_record_lists_running_processes(tmp_path, capsys, monkeypatch):
    d = tmp_path / "fed"
    _certs(d)
    (d / deploy.PID_FILE).write_text(json.dumps({"address": "127.0.0.1:19611", "pids": {"superlink": 1}}))
    monkeypatch.setattr(deploy.LocalFederation, "why_not_ours", lambda self, name: None)
    code, err = _run(capsys, "up", str(d), "-n", "2", "--port", "19611")
    assert code == 1 and err == [f"fl-poison: error: {(d / deploy.PID_FILE).resolve()} lists running processes "
                                 f"(superlink); run `fl-poison deploy down {d}` first"]


def test_host_and_port_rules():
    from fl_poison.deploy_checks import host_problem, port_problem

    assert host_problem("10.0.0.5") is None and host_problem("::1") is None
    assert host_problem("superlink.example.org") is None and host_problem("*.example.org") is None
    assert all(host_problem(h) for h in ("", "a b", "-x.org", "x..org", "a" * 64 + ".org", "*"))
    assert port_problem(65435, 1) is None and port_problem(65435, 2) is not None
    assert port_problem(1, 1) is None and port_problem(65536, 1) is not None


def test_certs_host_adds_names_to_loopback_ones(tmp_path):
    from cryptography import x509

    assert main(["deploy", "certs", str(tmp_path / "fed"), "-n", "1", "--host", "superlink.example.org",
                 "--host", "10.0.0.5"]) == 0
    srv = x509.load_pem_x509_certificate((tmp_path / "fed" / "certs" / "server.pem").read_bytes())
    san = srv.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["superlink.example.org", "localhost"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.5", "127.0.0.1"]
    assert srv.subject.rfc4514_string() == "CN=superlink.example.org"
