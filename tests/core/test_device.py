"""The `device` key: the device-generic path, exercised on the CPU with device=cpu."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from fl_poison.devices import resolve_device
from fl_poison.training import TrainSettings, evaluate, local_accuracy, model_device, train_local


def test_auto_picks_cuda_only_when_present():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)  # validation is the config's job


def _old_train_local(model, x, y, s, seed):
    """The earlier training loop (Python-float accumulators), kept here as the reference for 'CPU unchanged'."""
    n = int(y.shape[0])
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(s.epochs):
        perm = torch.randperm(n, generator=gen)
        loss_sum = correct = seen = 0.0
        for start in range(0, n, s.batch_size):
            idx = perm[start:start + s.batch_size]
            opt.zero_grad(set_to_none=True)
            logits = model(x[idx])
            loss = loss_fn(logits, y[idx])
            loss.backward()
            opt.step()
            b = int(idx.shape[0])
            loss_sum += float(loss.detach()) * b
            correct += float((logits.detach().argmax(1) == y[idx]).sum())
            seen += b
    return loss_sum / seen, correct / seen


def test_train_local_on_cpu_device_is_bit_identical_to_the_old_loop():
    torch.manual_seed(0)
    x, y = torch.randn(203, 12), torch.randint(0, 4, (203,))
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4)).to(resolve_device("cpu"))
    ref = copy.deepcopy(model)
    s = TrainSettings(epochs=2, batch_size=32, lr=0.1, momentum=0.9, weight_decay=1e-4, optimizer="sgd")
    got = train_local(model, x, y, s, seed=7)
    want = _old_train_local(ref, x, y, s, seed=7)
    assert got == want
    for a, b in zip(model.parameters(), ref.parameters()):
        assert torch.equal(a, b)
    assert model_device(model) == torch.device("cpu")
    assert model_device(nn.ReLU()) == torch.device("cpu")


def test_evaluation_moves_batches_to_the_model_device():
    torch.manual_seed(1)
    model = nn.Linear(5, 3).to(resolve_device("cpu"))
    x, y = torch.randn(50, 5), torch.randint(0, 3, (50,))
    loss, cm = evaluate(model, x, y, 3, batch_size=7)
    with torch.no_grad():
        logits = model(x)
    assert loss == pytest.approx(float(nn.functional.cross_entropy(logits, y)), rel=1e-6)
    assert cm.sum() == 50 and np.trace(cm) == int((logits.argmax(1) == y).sum())
    assert local_accuracy(model, x, y, batch_size=9) == pytest.approx(np.trace(cm) / 50)


def test_a_run_with_device_cpu_equals_device_auto_on_a_cpu_machine(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("auto is cuda here")
    from test_engine_parallel import _experiment

    a, ma = _experiment(tmp_path, "cpu", 1, device="cpu")
    b, mb = _experiment(tmp_path, "auto", 1, device="auto")
    assert [r["accuracy"] for r in a] == [r["accuracy"] for r in b]
    for k in ma:
        np.testing.assert_array_equal(ma[k], mb[k])
