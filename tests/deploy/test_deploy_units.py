"""Node-local data and role, red-team files, reply counting, certificates: offline and fast."""

from __future__ import annotations

import numpy as np
import pytest

from fl_poison.app.node import identity, local_node, node_setup, read_red_team, server_malicious
from fl_poison.config import ConfigError, resolve
from fl_poison.data.formats import write_idx
from fl_poison.federation import federation_for

RUN = {"dataset": "digits", "num-clients": 3, "clients-per-round": 3, "attack": "label-flip",
       "source-class": 3, "target-class": 8, "num-malicious": 1, "seed": 4}


def test_without_malicious_key_the_role_and_data_follow_the_plan():
    cfg = resolve(RUN)
    fed = federation_for(cfg)
    for i in range(3):
        node = local_node(cfg, {"partition-id": i, "num-partitions": 3})
        assert node.malicious == (i in fed.malicious)
        x, y = fed.client_data(i)
        assert np.array_equal(node.y.numpy(), y.numpy())
        assert identity({"partition-id": i, "num-partitions": 3})["self-described"] == 0


def test_node_config_role_overrides_the_plan_and_carries_its_own_attack_keys():
    cfg = resolve({**RUN, "num-malicious": 0, "attack": "none", "source-class": -1, "target-class": -1})
    node = local_node(cfg, {"partition-id": 1, "num-partitions": 3, "malicious": "true",
                            "attack": "label-flip", "source-class": 1, "target-class": 7})
    assert node.malicious and node.config["attack"] == "label-flip" and node.config.source == 1
    assert cfg["attack"] == "none"  # the run config is untouched
    planned_bad = federation_for(resolve(RUN)).malicious[0]
    honest = local_node(resolve(RUN), {"partition-id": planned_bad, "num-partitions": 3, "malicious": False})
    assert not honest.malicious
    assert identity({"partition-id": 0, "malicious": "false"})["self-described"] == 1


@pytest.mark.parametrize("node_config, key", [
    ({"num-partitions": 3}, "partition-id"),
    ({"partition-id": 3, "num-partitions": 3}, "partition-id"),
    ({"partition-id": 0, "malicous": True}, "malicous"),
    ({"partition-id": 0, "malicious": "maybe"}, "malicious"),
    ({"partition-id": 0, "source-class": 2}, "source-class"),
])
def test_bad_node_configs_name_the_key(node_config, key):
    with pytest.raises(ConfigError) as exc:
        node_setup(node_config)
    assert exc.value.key == key


def test_num_partitions_must_match_the_run():
    with pytest.raises(ConfigError) as exc:
        local_node(resolve(RUN), {"partition-id": 0, "num-partitions": 4})
    assert exc.value.key == "num-partitions"


def test_own_files_are_the_whole_local_training_set(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "mnist"
    root.mkdir()
    for part, n in (("train", 40), ("t10k", 10)):
        write_idx(root / f"{part}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(root / f"{part}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))
    cfg = resolve({"dataset": "mnist", "num-clients": 3, "clients-per-round": 3, "data-dir": "/nonexistent"})
    node = local_node(cfg, {"partition-id": 2, "data-dir": str(tmp_path), "dataset": "mnist", "malicious": "false"})
    assert node.cid == 2 and tuple(node.x.shape[:1]) == (40,)
    assert node.y.tolist() == [i % 10 for i in range(40)]
    with pytest.raises(ConfigError) as exc:
        local_node(cfg, {"partition-id": 0, "data-dir": str(tmp_path), "dataset": "digits"})
    assert exc.value.key == "dataset"


def test_red_team_file_ids_and_names(tmp_path):
    f = tmp_path / "rt.txt"
    f.write_text("# red team\n2\nalice  # by name\n\n")
    assert read_red_team(f, {"alice": 0, "bob": 1}) == (0, 2)
    f.write_text("carol\n")
    with pytest.raises(ConfigError):
        read_red_team(f, {"alice": 0})
    with pytest.raises(ConfigError):
        read_red_team(tmp_path / "missing.txt", {})


def test_server_knows_malicious_only_from_red_team_file_when_nodes_describe_themselves(tmp_path):
    plan = (1,)
    sim = [{"partition-id": i, "node-name": f"node{i}", "self-described": 0} for i in range(3)]
    dep = [{**i, "self-described": 1} for i in sim]
    assert server_malicious(resolve(RUN), plan, sim) == plan
    assert server_malicious(resolve(RUN), plan, dep) is None
    (tmp_path / "rt").write_text("node2\n")
    assert server_malicious(resolve({**RUN, "red-team-file": str(tmp_path / "rt")}), plan, dep) == (2,)


def test_counting_grid_records_sent_and_missing():
    from types import SimpleNamespace

    from flwr.app import MessageType

    from fl_poison.app.replies import CountingGrid

    def msg(kind):
        return SimpleNamespace(metadata=SimpleNamespace(message_type=kind))

    class Fake:  # one error reply to three training messages: two never came back
        def send_and_receive(self, messages, *, timeout=None):
            return [SimpleNamespace(has_error=lambda: True)]

    g = CountingGrid(Fake())
    g.send_and_receive([msg(MessageType.TRAIN)] * 3, timeout=1.0)
    assert (g.last_train.sent, g.last_train.missing, g.last_train.errors) == (3, 2, 1)
    g.last_train = None
    g.send_and_receive([msg(MessageType.QUERY)], timeout=1.0)  # identify queries are not rounds
    assert g.last_train is None


def test_certificates_chain_and_node_keys(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key

    from fl_poison.deploy import make_certificates, write_connection

    p = make_certificates(tmp_path, 2, extra_nodes=1)
    ca = x509.load_pem_x509_certificate(p["ca"].read_bytes())
    srv = x509.load_pem_x509_certificate(p["server-cert"].read_bytes())
    srv.verify_directly_issued_by(ca)
    san = srv.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    for i in range(3):
        priv = load_ssh_private_key((tmp_path / f"node{i}.key").read_bytes(), None)
        pub = load_ssh_public_key((tmp_path / f"node{i}.key.pub").read_bytes())
        assert isinstance(pub, ec.EllipticCurvePublicKey) and pub.curve.name == "secp384r1"
        assert priv.public_key().public_numbers() == pub.public_numbers()
    assert (tmp_path / "node0.key").stat().st_mode & 0o077 == 0
    import tomllib
    cfg = write_connection(tmp_path / "home", "127.0.0.1:9", p["ca"])
    write_connection(tmp_path / "home", "127.0.0.1:9", None, name="plain", make_default=False)
    doc = tomllib.loads(cfg.read_text())
    assert doc["superlink"]["default"] == "fl-poison-local"
    assert doc["superlink"]["fl-poison-local"]["root-certificates"] == str(p["ca"].resolve())
    assert doc["superlink"]["plain"] == {"address": "127.0.0.1:9", "insecure": True}
