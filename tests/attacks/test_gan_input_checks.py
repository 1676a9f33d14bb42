"""The GAN attack's sizes are bounded before a run, and a client's malformed preview never crashes the server."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from flwr.app import ConfigRecord

from clients import gan
from clients.attacks.gan import PREVIEW, preview_record
from fl_poison.cli import main
from fl_poison.config import ConfigError, resolve
from fl_poison.data.datasets import get_spec
from flower_replies import make_reply

GAN = {"attack": "gan", "source-class": 3, "target-class": 8, "num-malicious": 1}
GIB = 1024 ** 3


@pytest.fixture
def sixteen_gib(monkeypatch):
    """A machine with 16 GiB, whatever this one has."""
    monkeypatch.setattr("fl_poison.devices.memory_bytes", lambda device: 16 * GIB, raising=False)


@pytest.mark.parametrize("kind, shape", [("dcgan", (1, 8, 8)), ("dcgan", (1, 28, 28)), ("dcgan", (3, 32, 32)),
                                         ("mlp", (1, 8, 8)), ("mlp", (3, 5, 7))])
def test_generator_size_counts_the_parameters_build_generator_makes(kind, shape):
    g = gan.build_generator(kind, 7, 5, shape)
    assert gan.generator_size(kind, 7, 5, shape)[0] == sum(p.numel() for p in g.parameters())


@pytest.mark.parametrize("key, value", [("gan-latent", 10 ** 9), ("gan-samples", 10 ** 8), ("gan-batch", 10 ** 8),
                                        ("gan-width", 10 ** 6), ("gan-fake-samples", 10 ** 8)])
def test_a_gan_round_that_cannot_fit_in_memory_is_refused_naming_its_key(sixteen_gib, key, value):
    with pytest.raises(ConfigError) as err:
        resolve({**GAN, key: value})
    assert err.value.key == key and "16.0 GiB" in str(err.value)


def test_the_default_gan_and_the_papers_mnist_sizes_fit(sixteen_gib):
    resolve(GAN)
    resolve({**GAN, "dataset": "mnist", "gan-samples": 5000, "gan-batch": 256})


def test_the_cli_refuses_an_oversized_gan_before_loading_data(sixteen_gib, monkeypatch, capsys):
    def boom(*a, **k):
        raise AssertionError("data loaded")

    monkeypatch.setattr("fl_poison.federation.federation_for", boom)
    args = ["run", *[f"--set={k}={v}" for k, v in GAN.items()], "--set", "gan-latent=1000000000"]
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fl-poison: error: invalid value for 'gan-latent'")


# --- previews read by the server -----------------------------------------------------------------------

def _tracker():
    from clients.gan_measurement import GanMeasurement
    from fl_poison.federation import new_model

    cfg = resolve({**GAN, "figures": False})
    fed = SimpleNamespace(dataset=SimpleNamespace(spec=get_spec("digits")))
    return GanMeasurement(cfg, fed), new_model(cfg)


def _reply(node: int, preview: dict):
    msg = make_reply([np.zeros(2, np.float32)], 10, node)
    msg.content["gan-preview"] = ConfigRecord(preview)
    return msg


def _good(server_round: int = 2, n: int = PREVIEW) -> dict:
    return preview_record(torch.zeros(n, 1, 8, 8), server_round)


def _bad(kind: str) -> dict:
    p = _good()
    if kind == "short-bytes":
        p["images"] = p["images"][:-2]
    elif kind == "wrong-image-shape":
        p["shape"] = [PREVIEW, 1, 4, 16]
    elif kind == "too-many-images":
        p = preview_record(torch.zeros(PREVIEW + 1, 1, 8, 8), 2)
    elif kind == "shape-not-ints":
        p["shape"] = "64,1,8,8"
    elif kind == "missing-images":
        del p["images"]
    elif kind == "future-round":
        p["round"] = 99
    elif kind == "nan-pixels":
        p = preview_record(torch.full((PREVIEW, 1, 8, 8), float("nan")), 2)
    return p


@pytest.mark.parametrize("kind", ["short-bytes", "wrong-image-shape", "too-many-images", "shape-not-ints",
                                  "missing-images", "future-round", "nan-pixels"])
def test_a_malformed_preview_is_logged_and_skipped_for_the_next_good_one(server_identity, caplog, kind):
    tracker, model = _tracker()
    ex = SimpleNamespace(replies=[_reply(7, _bad(kind)), _reply(8, _good(2))])
    with caplog.at_level(logging.WARNING, "fl_poison.experiment"):
        out = tracker.round_metrics(2, model, ex.replies)
    assert "gan-preview of node 7" in caplog.text
    assert out["gan_recognised"] is not None and tracker.snapshots.keys() == {2}
    assert tracker.summary_entries()["gan"]["invalid_previews"] == 1


def test_only_malformed_previews_leave_the_round_without_a_measurement(server_identity):
    tracker, model = _tracker()
    out = tracker.round_metrics(1, model, [_reply(7, _bad("short-bytes"))])
    assert out == {"gan_recognised": None} and not tracker.snapshots

