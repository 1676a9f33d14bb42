"""train_many (all clients of a round at once) reproduces train_local client by client: sizes, flips, optimisers."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from fl_poison.batched_training import supports, train_many
from fl_poison.data.partition import partition
from fl_poison.models import build_model
from fl_poison.training import TrainSettings, train_local


def _clients(sizes, dim=10, classes=4, flip=(), seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for c, n in enumerate(sizes):
        x = torch.randn(n, dim, generator=g)
        y = (x[:, :classes].argmax(1) if n else torch.zeros(0, dtype=torch.long))
        if c in flip:  # label flipping 1 -> 3
            y = torch.where(y == 1, torch.full_like(y, 3), y)
        out.append((x, y))
    return out


def _mlp():
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 4))


def _compare(model, data, s, seeds, atol=2e-5):
    params, metrics = train_many(model, data, s, seeds)
    for c, ((x, y), seed) in enumerate(zip(data, seeds)):
        ref = copy.deepcopy(model)
        loss, acc = train_local(ref, x, y, s, seed=seed)
        for n, p in ref.named_parameters():
            torch.testing.assert_close(params[c][n], p.detach(), atol=atol, rtol=1e-4)
        for n, b in ref.named_buffers():  # BatchNorm's running statistics and its step counter, per client
            torch.testing.assert_close(params[c][n], b.detach(), atol=atol, rtol=1e-4)
        assert set(params[c]) == {n for n, _ in [*ref.named_parameters(), *ref.named_buffers()]}
        if np.isnan(loss):
            assert np.isnan(metrics[c][0]) and np.isnan(metrics[c][1])
        else:
            assert metrics[c][0] == pytest.approx(loss, rel=1e-4, abs=1e-6)
            assert metrics[c][1] == pytest.approx(acc, abs=1e-9)


@pytest.mark.parametrize("optimizer,momentum,wd", [("sgd", 0.9, 0.0), ("sgd", 0.0, 1e-3), ("adam", 0.0, 1e-4)])
def test_iid_sizes_equal_train_local(optimizer, momentum, wd):
    s = TrainSettings(epochs=2, batch_size=16, lr=0.05 if optimizer == "sgd" else 1e-2, momentum=momentum,
                      weight_decay=wd, optimizer=optimizer)
    _compare(_mlp(), _clients([64, 64, 64, 64], flip={1}), s, [11, 12, 13, 14])


def test_dirichlet_sizes_with_label_flipping_equal_train_local():
    labels = np.random.default_rng(0).integers(0, 4, 400)
    parts = partition(labels, 6, "dirichlet", seed=1, alpha=0.5, num_classes=4)
    sizes = [len(p) for p in parts] + [0, 5]  # plus an empty client and one smaller than a batch
    assert len(set(sizes)) > 3
    s = TrainSettings(epochs=3, batch_size=32, lr=0.05, momentum=0.9, weight_decay=0.0, optimizer="sgd")
    _compare(_mlp(), _clients(sizes, flip={0, 2}), s, list(range(100, 100 + len(sizes))))


def test_a_cnn_equals_train_local():
    model = build_model("lfighter-cnn", 10, (1, 28, 28))
    assert supports(model) is None  # dropout p = 0 by default
    assert supports(build_model("lfighter-cnn", 10, (1, 28, 28), dropout=0.5)) is not None
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)) for n in (40, 23)]
    s = TrainSettings(epochs=1, batch_size=16, lr=0.05, momentum=0.9, weight_decay=0.0, optimizer="sgd")
    _compare(model, data, s, [1, 2], atol=1e-4)


def test_model_unchanged_and_unsupported_models_refused():
    model = _mlp()
    before = copy.deepcopy(model.state_dict())
    s = TrainSettings(epochs=1, batch_size=8, lr=0.1, momentum=0.0, weight_decay=0.0, optimizer="sgd")
    train_many(model, _clients([20, 9]), s, [0, 1])
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert supports(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))) is None
    assert "momentum=None" in supports(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2, momentum=None)))
    assert "InstanceNorm1d" in supports(nn.Sequential(nn.Linear(2, 2), nn.InstanceNorm1d(2, track_running_stats=True)))
    assert supports(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))) is not None
    assert supports(_mlp(), augment=lambda x, g: x) is not None
    with_buffer = _mlp()
    with_buffer.register_buffer("scale", torch.ones(1))
    assert "scale" in supports(with_buffer)
    with pytest.raises(ValueError, match="momentum=None"):
        train_many(nn.Sequential(nn.Linear(10, 4), nn.BatchNorm1d(4, momentum=None)), _clients([8]), s, [0])
    bn = _bn_mlp()
    before = copy.deepcopy(bn.state_dict())
    train_many(bn, _clients([20, 9]), s, [0, 1])
    for k, v in bn.state_dict().items():  # the running statistics of the model passed in stay as they were
        assert torch.equal(v, before[k])


def _bn_mlp(affine: bool = True, track: bool = True):
    torch.manual_seed(4)
    return nn.Sequential(nn.Linear(10, 16), nn.BatchNorm1d(16, affine=affine, track_running_stats=track), nn.ReLU(),
                         nn.Linear(16, 4))


@pytest.mark.parametrize("affine,track", [(True, True), (False, True), (True, False)])
@pytest.mark.parametrize("optimizer,momentum", [("sgd", 0.9), ("adam", 0.0)])
def test_batch_norm_uses_each_clients_own_batch_and_keeps_its_own_running_statistics(affine, track, optimizer,
                                                                                     momentum):
    """Unequal sizes: short last batches (padded rows must not enter a client's statistics) and frozen clients."""
    model = _bn_mlp(affine, track)
    with torch.no_grad():  # running statistics that are not the defaults, as after earlier rounds
        for b in model.buffers():
            if b.dtype.is_floating_point:
                b.uniform_(0.5, 1.5)
    s = TrainSettings(epochs=2, batch_size=16, lr=0.05 if optimizer == "sgd" else 1e-2, momentum=momentum,
                      weight_decay=1e-3, optimizer=optimizer)
    _compare(model, _clients([40, 23, 18, 64], flip={1}), s, [5, 6, 7, 8], atol=1e-4)


def test_a_batch_norm_cnn_equals_train_local():
    model = build_model("tolpegin-fmnist-cnn", 10, (1, 28, 28))
    assert supports(model) is None
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)) for n in (30, 19)]
    s = TrainSettings(epochs=1, batch_size=8, lr=0.05, momentum=0.9, weight_decay=0.0, optimizer="sgd")
    _compare(model, data, s, [3, 4], atol=1e-4)
