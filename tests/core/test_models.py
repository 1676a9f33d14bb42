"""Tests for the model zoo: shapes, paper architectures, and the
penultimate/output-layer contract the ADA attack and LFighter rely on."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fl_poison.models import (
    MODEL_NAMES,
    MODELS,
    build_model,
    check_compatible,
    count_params,
    model_input_shapes,
)
import numpy as np
from fl_poison.metrics import model_poisoning as MP
from fl_poison import federation as FED  # noqa: E402
from fl_poison.config import resolve  # noqa: E402

torch.set_num_threads(1)

MNIST = (1, 28, 28)
CIFAR = (3, 32, 32)
DIGITS = (1, 8, 8)

# (name, input_shape) pairs every model must support.
CASES = [
    ("mlp", DIGITS),
    ("mlp", MNIST),
    ("lfighter-cnn", MNIST),
    ("tolpegin-fmnist-cnn", MNIST),
    ("tolpegin-cifar-cnn", CIFAR),
    ("ada-cnn", MNIST),
    ("ada-cnn", CIFAR),
    ("resnet18", CIFAR),
    ("resnet18", MNIST),
]
PENULT_DIM = {
    "mlp": 64,
    "lfighter-cnn": 50,
    "tolpegin-fmnist-cnn": 1568,
    "tolpegin-cifar-cnn": 128,
    "ada-cnn": 200,
    "resnet18": 512,
}


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_registry_and_names() -> None:
    assert set(MODEL_NAMES) == set(MODELS) == set(PENULT_DIM)
    assert {n for n, _ in CASES} == set(MODEL_NAMES)


@pytest.mark.parametrize("name,shape", CASES)
@pytest.mark.parametrize("num_classes", [10, 7])
def test_output_and_output_layer(name: str, shape: tuple[int, int, int], num_classes: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes, shape).eval()
    x = torch.randn(3, *shape)
    with torch.no_grad():
        logits = model(x)
        feats = model.penultimate(x)
    assert logits.shape == (3, num_classes)
    assert feats.shape == (3, PENULT_DIM[name])

    layer = model.output_layer
    assert isinstance(getattr(model, layer), nn.Linear)
    sd = model.state_dict()
    w, b = sd[f"{layer}.weight"], sd[f"{layer}.bias"]
    assert w.shape == (num_classes, PENULT_DIM[name])
    assert b.shape == (num_classes,)
    # The output layer is the last Linear in the module tree.
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert linears[-1] == layer

    # forward == output layer applied to penultimate features.
    torch.testing.assert_close(feats @ w.T + b, logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,shape", CASES)
def test_train_mode_backward(name: str, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = build_model(name, 10, shape).train()
    loss = nn.functional.cross_entropy(model(torch.randn(4, *shape)), torch.arange(4))
    loss.backward()
    assert getattr(model, model.output_layer).weight.grad is not None


def test_lfighter_cnn_architecture() -> None:
    model = build_model("lfighter-cnn", 10, MNIST)
    # LFighter Table 2: ~22K parameters; the exact classic MNIST CNN has 21,840.
    assert 21_000 <= count_params(model) <= 23_000
    assert count_params(model) == 21_840
    s = _shapes(model)
    assert s["conv1.weight"] == (10, 1, 5, 5)
    assert s["conv2.weight"] == (20, 10, 5, 5)
    assert s["fc1.weight"] == (50, 320)
    assert s["fc2.weight"] == (10, 50)


def test_tolpegin_fmnist_table6() -> None:
    model = build_model("tolpegin-fmnist-cnn", 10, MNIST)
    s = _shapes(model)
    # Table 6: Conv 5x1x16, Conv 5x16x32 (each + BN), FC 1568 / 10.
    assert s["conv1.weight"] == (16, 1, 5, 5)
    assert s["conv2.weight"] == (32, 16, 5, 5)
    assert s["bn1.weight"] == (16,)
    assert s["bn2.weight"] == (32,)
    assert s["fc.weight"] == (10, 1568)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) == 2 and len(linears) == 1
    assert count_params(model) == 29_034


def test_tolpegin_cifar_table5() -> None:
    model = build_model("tolpegin-cifar-cnn", 10, CIFAR)
    s = _shapes(model)
    # Table 5: 3x3 convs 3->32->32 | pool | 32->64->64 | pool | 64->128->128 | pool,
    # each conv + ReLU + BN; FC 2048 -> 128; FC 128 -> 10.
    expected = [(32, 3), (32, 32), (64, 32), (64, 64), (128, 64), (128, 128)]
    for i, (out_c, in_c) in enumerate(expected, start=1):
        assert s[f"conv{i}.weight"] == (out_c, in_c, 3, 3)
        assert s[f"bn{i}.weight"] == (out_c,)
    assert s["fc1.weight"] == (128, 2048)
    assert s["fc2.weight"] == (10, 128)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) == 6 and len(linears) == 2
    assert count_params(model) == 551_466


def test_tolpegin_cifar_relu_before_bn() -> None:
    """Table 5 (and the authors' code) order Conv + ReLU + BN: BN sees only
    non-negative, post-ReLU activations."""
    model = build_model("tolpegin-cifar-cnn", 10, CIFAR).eval()
    captured: dict[str, torch.Tensor] = {}
    model.bn1.register_forward_hook(lambda m, i, o: captured.__setitem__("in", i[0]))
    with torch.no_grad():
        model(torch.randn(2, *CIFAR))
    assert captured["in"].min() >= 0  # BN sees post-ReLU activations


def test_tolpegin_fmnist_bn_before_relu() -> None:
    """For Table 6 we follow the authors' code (Conv + BN + ReLU): BN sees raw
    conv outputs, and the pooled block output is post-ReLU."""
    model = build_model("tolpegin-fmnist-cnn", 10, MNIST).eval()
    with torch.no_grad():
        x = torch.randn(2, *MNIST)
        assert model.conv1(x).min() < 0
        assert model.penultimate(x).min() >= 0


def test_ada_cnn_architecture() -> None:
    for shape, flat in ((MNIST, 50 * 4 * 4), (CIFAR, 50 * 5 * 5)):
        s = _shapes(build_model("ada-cnn", 10, shape))
        assert s["conv1.weight"] == (20, shape[0], 5, 5)
        assert s["conv2.weight"] == (50, 20, 5, 5)
        assert s["fc1.weight"] == (200, flat)
        assert s["fc2.weight"] == (10, 200)


def test_resnet18_architecture() -> None:
    model = build_model("resnet18", 10, CIFAR)
    n = count_params(model)
    assert n == 11_173_962
    assert abs(n - 11.2e6) < 0.1e6
    s = _shapes(model)
    assert s["conv1.weight"] == (64, 3, 3, 3)  # 3x3 stem, not 7x7
    assert s["linear.weight"] == (10, 512)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    # Stem is stride 1 without max-pool: layer1 keeps 32x32; layer4 is 4x4.
    sizes: dict[str, tuple[int, ...]] = {}
    for name in ("layer1", "layer4"):
        getattr(model, name).register_forward_hook(
            lambda m, i, o, name=name: sizes.__setitem__(name, tuple(o.shape))
        )
    with torch.no_grad():
        model.eval()(torch.randn(1, *CIFAR))
    assert sizes["layer1"] == (1, 64, 32, 32)
    assert sizes["layer4"] == (1, 512, 4, 4)
    # Two BasicBlocks (2 convs each) per stage: 1 + 16 + 3 shortcut convs.
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 20


def test_resnet18_any_channels() -> None:
    model = build_model("resnet18", 4, (5, 16, 16))
    assert model(torch.randn(2, 5, 16, 16)).shape == (2, 4)


def test_input_shapes_and_compat() -> None:
    assert model_input_shapes("mlp") is None
    assert model_input_shapes("resnet18") is None
    assert model_input_shapes("tolpegin-cifar-cnn") == (CIFAR,)
    assert model_input_shapes("tolpegin-fmnist-cnn") == (MNIST,)
    assert model_input_shapes("lfighter-cnn") == (MNIST,)
    assert set(model_input_shapes("ada-cnn") or ()) == {MNIST, CIFAR}
    for name, shape in CASES:
        assert check_compatible(name, shape) is None

    msg = check_compatible("tolpegin-cifar-cnn", MNIST)
    assert msg is not None and "tolpegin-cifar-cnn" in msg
    assert check_compatible("lfighter-cnn", CIFAR) is not None
    assert check_compatible("tolpegin-fmnist-cnn", DIGITS) is not None
    assert check_compatible("ada-cnn", DIGITS) is not None
    assert check_compatible("mlp", (1, 8)) is not None
    assert "allowed" in (check_compatible("nope", MNIST) or "")
    with pytest.raises(ValueError, match="tolpegin-cifar-cnn"):
        build_model("tolpegin-cifar-cnn", 10, MNIST)


def test_unknown_name() -> None:
    with pytest.raises(ValueError, match="allowed") as exc:
        build_model("vgg16", 10, CIFAR)
    for name in MODEL_NAMES:
        assert name in str(exc.value)
    with pytest.raises(ValueError):
        model_input_shapes("vgg16")


def test_bad_num_classes() -> None:
    with pytest.raises(ValueError):
        build_model("mlp", 1, DIGITS)


def test_seeding_is_callers_job() -> None:
    torch.manual_seed(1)
    a = build_model("mlp", 10, DIGITS)
    b = build_model("mlp", 10, DIGITS)
    torch.manual_seed(1)
    c = build_model("mlp", 10, DIGITS)
    assert not torch.equal(a.fc1.weight, b.fc1.weight)
    assert torch.equal(a.fc1.weight, c.fc1.weight)


def test_lfighter_dropout_switch_paper_vs_authors_code():
    """Paper (default): no dropout, so train-mode forward is deterministic; authors' code: p = 0.5."""
    from fl_poison.models import build_model as bm

    x = torch.randn(8, 1, 28, 28)
    paper = bm("lfighter-cnn", 10, (1, 28, 28)).train()
    assert torch.equal(paper(x), paper(x))
    code = bm("lfighter-cnn", 10, (1, 28, 28), dropout=0.5).train()
    assert code.drop.p == 0.5 and code.conv2_drop.p == 0.5
    assert not torch.equal(code(x), code(x))
    with pytest.raises(ValueError, match="no dropout"):
        bm("mlp", 10, (1, 8, 8), dropout=0.3)


SMALL = {"dataset": "digits", "num-clients": 4, "clients-per-round": 4, "seed": 3}


def _state(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def test_predict_in_eval_mode_and_in_batches():
    """Batches of 3 over 7 rows give the argmax of one full eval-mode forward pass; dropout is off."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Dropout(0.9), torch.nn.Linear(5, 3))
    x = torch.randn(7, 4)
    model.train()
    got = MP.predict(model, x, batch_size=3)
    assert not model.training
    with torch.no_grad():
        want = model(x).argmax(1).numpy()
    assert np.array_equal(got, want) and got.shape == (7,)
    empty = MP.predict(model, x[:0])
    assert empty.shape == (0,) and empty.dtype == np.int64


def test_new_model_is_seeded_and_takes_the_dropout_key():
    """Same seed -> same weights; an explicit dropout reaches the model, -1 keeps the model's default."""
    cfg = resolve({"dataset": "mnist", "dropout": 0.3})
    a, b = _state(FED.new_model(cfg)), _state(FED.new_model(cfg))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    other = _state(FED.new_model(cfg.replace(seed=cfg["seed"] + 1)))
    assert not all(np.array_equal(a[k], other[k]) for k in a)
    rates = [m.p for m in FED.new_model(cfg).modules() if isinstance(m, (torch.nn.Dropout, torch.nn.Dropout2d))]
    assert rates and all(p == 0.3 for p in rates)
    from fl_poison.models import build_model

    default = [m.p for m in build_model("lfighter-cnn", 10, (1, 28, 28)).modules()
               if isinstance(m, (torch.nn.Dropout, torch.nn.Dropout2d))]
    got = [m.p for m in FED.new_model(cfg.replace(dropout=-1.0)).modules()
           if isinstance(m, (torch.nn.Dropout, torch.nn.Dropout2d))]
    assert got == default


def test_model_outputs_is_a_python_int():
    assert FED.model_outputs(resolve(SMALL)) == 10 and type(FED.model_outputs(resolve(SMALL))) is int
