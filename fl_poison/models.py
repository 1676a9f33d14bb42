"""Model zoo for the poisoning experiments.

Every model exposes:

* ``output_layer`` -- name of the final ``nn.Linear``; defences such as
  LFighter and attacks such as ADA read ``f"{output_layer}.weight"`` ([C, H])
  and ``f"{output_layer}.bias"`` ([C]) from the state dict.
* ``penultimate(x)`` -- the H-dim features fed into that layer (ADA measures
  class distances in this latent space).
* ``forward(x)`` -- logits, i.e. ``output_layer(penultimate(x))``; no softmax,
  so the loss is ``cross_entropy`` on the logits.

Seeding is the caller's job: call ``torch.manual_seed`` before ``build_model``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

InputShape = tuple[int, int, int]

__all__ = [
    "MODELS",
    "MODEL_NAMES",
    "MLP",
    "LFighterCNN",
    "TolpeginFMNISTCNN",
    "TolpeginCIFARCNN",
    "ADACNN",
    "ResNet18",
    "BasicBlock",
    "build_model",
    "count_params",
    "model_input_shapes",
    "check_compatible",
]

MNIST_SHAPE: InputShape = (1, 28, 28)
CIFAR_SHAPE: InputShape = (3, 32, 32)


class MLP(nn.Module):
    """Small MLP for sklearn digits (1x8x8 -> 64 inputs): in -> hidden -> C.

    The input is flattened, so any (C, H, W) works.
    """

    output_layer = "fc2"

    def __init__(self, num_classes: int, input_shape: InputShape, hidden: int = 64) -> None:
        super().__init__()
        self.fc1 = nn.Linear(math.prod(input_shape), hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def penultimate(self, x: Tensor) -> Tensor:
        return F.relu(self.fc1(torch.flatten(x, 1)))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.penultimate(x))


class LFighterCNN(nn.Module):
    """LFighter's MNIST model: "two-layer CNN with two fully connected layers",
    ~22K parameters (LFighter Sec. 6.1 / Table 2). This is the classic small
    PyTorch MNIST CNN used by the authors' code: 21,840 parameters for C=10.

    The paper mentions no dropout; the authors' code has Dropout2d after conv2
    and dropout before fc2 (p = 0.5). ``dropout`` = 0 (default, the paper)
    or 0.5 (the authors' code). With 10 IID MNIST clients, 5 rounds, SGD
    lr 0.01: 0.979 test accuracy without dropout, 0.962 with it.
    """

    output_layer = "fc2"

    def __init__(self, num_classes: int, input_shape: InputShape = MNIST_SHAPE, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(input_shape[0], 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d(dropout)
        self.fc1 = nn.Linear(20 * 4 * 4, 50)  # 28 -> 24 -> 12 -> 8 -> 4
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(50, num_classes)

    def penultimate(self, x: Tensor) -> Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.drop(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.penultimate(x))


class TolpeginFMNISTCNN(nn.Module):
    """Tolpegin et al. (ESORICS'20) Fashion-MNIST CNN, Table 6.

    Conv 5x1x16 -> pool 2x2 -> Conv 5x16x32 -> pool 2x2 -> FC 1568/C.
    1568 = 32*7*7 implies 'same' padding (2). The table lists
    "Conv + ReLu + Batch Norm"; the authors' released code applies BatchNorm
    before ReLU for this model, which we follow (parameter shapes are
    identical either way).
    """

    output_layer = "fc"

    def __init__(self, num_classes: int, input_shape: InputShape = MNIST_SHAPE) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(input_shape[0], 16, kernel_size=5, padding=2)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=5, padding=2)
        self.bn2 = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32 * 7 * 7, num_classes)

    def penultimate(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return torch.flatten(x, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.penultimate(x))


class TolpeginCIFARCNN(nn.Module):
    """Tolpegin et al. (ESORICS'20) CIFAR-10 CNN, Table 5.

    Three blocks of [Conv3x3 + ReLU + BN] x2 + MaxPool 2x2 with 32, 64, 128
    channels ('same' padding, so 32 -> 4 spatially), then FC 2048 -> 128 and
    FC 128 -> C (+softmax, dropped: we return logits). The table lists no
    activation after the first FC layer and neither does the authors' code,
    so there is none here; ``penultimate`` is the 128-dim fc1 output.
    """

    output_layer = "fc2"

    def __init__(self, num_classes: int, input_shape: InputShape = CIFAR_SHAPE) -> None:
        super().__init__()
        chans = [input_shape[0], 32, 32, 64, 64, 128, 128]
        for i in range(6):
            setattr(self, f"conv{i + 1}", nn.Conv2d(chans[i], chans[i + 1], 3, padding=1))
            setattr(self, f"bn{i + 1}", nn.BatchNorm2d(chans[i + 1]))
        self.fc1 = nn.Linear(128 * 4 * 4, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def penultimate(self, x: Tensor) -> Tensor:
        for i in range(1, 7):
            conv: nn.Conv2d = getattr(self, f"conv{i}")
            bn: nn.BatchNorm2d = getattr(self, f"bn{i}")
            x = bn(F.relu(conv(x)))
            if i % 2 == 0:
                x = F.max_pool2d(x, 2)
        return self.fc1(torch.flatten(x, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.penultimate(x))


class ADACNN(nn.Module):
    """ADA paper's 4-layer CNN (Sun et al., Sec. V-B).

    conv 5x5/s1 -> 20 + ReLU, conv 5x5/s1 -> 50 + ReLU, FC -> 200, FC -> C.
    The paper states no pooling; we add LeNet-style 2x2 max-pooling after
    each conv (without it fc1 would have ~4M weights on MNIST). The paper's
    200-dim "last hidden layer" latent is ``penultimate`` (after ReLU).
    """

    output_layer = "fc2"

    def __init__(self, num_classes: int, input_shape: InputShape) -> None:
        super().__init__()
        c, h, w = input_shape
        self.conv1 = nn.Conv2d(c, 20, kernel_size=5, stride=1)
        self.conv2 = nn.Conv2d(20, 50, kernel_size=5, stride=1)
        fh, fw = (_ada_spatial(h), _ada_spatial(w))
        if fh < 1 or fw < 1:
            raise ValueError(f"ada-cnn: input {input_shape} too small (need H, W >= 14)")
        self.fc1 = nn.Linear(50 * fh * fw, 200)
        self.fc2 = nn.Linear(200, num_classes)

    def penultimate(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc1(torch.flatten(x, 1)))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.penultimate(x))


def _ada_spatial(n: int) -> int:
    """Spatial size after ADACNN's two (conv5 valid, pool2) stages."""
    return ((n - 4) // 2 - 4) // 2


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv+BN with an identity (or 1x1) shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_ch),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 for 32x32 inputs (LFighter's CIFAR-10 model, ~11M params).

    CIFAR variant of He et al.: 3x3/s1 stem, no max-pool, BasicBlocks
    [2, 2, 2, 2] with 64-128-256-512 channels, global avg-pool, one FC.
    """

    output_layer = "linear"

    def __init__(self, num_classes: int, input_shape: InputShape = CIFAR_SHAPE) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(input_shape[0], 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers: list[nn.Module] = []
        in_ch = 64
        for i, out_ch in enumerate((64, 128, 256, 512)):
            stride = 1 if i == 0 else 2
            stage = nn.Sequential(BasicBlock(in_ch, out_ch, stride), BasicBlock(out_ch, out_ch, 1))
            layers.append(stage)
            in_ch = out_ch
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(512, num_classes)

    def penultimate(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.pool(x), 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.penultimate(x))


Builder = Callable[[int, InputShape], nn.Module]

MODELS: dict[str, Builder] = {
    "mlp": MLP,
    "lfighter-cnn": LFighterCNN,
    "tolpegin-fmnist-cnn": TolpeginFMNISTCNN,
    "tolpegin-cifar-cnn": TolpeginCIFARCNN,
    "ada-cnn": ADACNN,
    "resnet18": ResNet18,
}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)

# Input shapes each fixed-architecture model is defined for; None = any
# (C, H, W) works (mlp flattens, resnet18 has an adaptive pool).
_INPUT_SHAPES: dict[str, tuple[InputShape, ...] | None] = {
    "mlp": None,
    "lfighter-cnn": (MNIST_SHAPE,),
    "tolpegin-fmnist-cnn": (MNIST_SHAPE,),
    "tolpegin-cifar-cnn": (CIFAR_SHAPE,),
    "ada-cnn": (MNIST_SHAPE, CIFAR_SHAPE),
    "resnet18": None,
}


# resnet18 needs a side of 16 or more: 8x8 digits would be a 1x1 map after its three stride-2 stages.
_MIN_SIDE: dict[str, int] = {"resnet18": 16}


def _check_name(name: str) -> None:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(MODEL_NAMES)}")


def model_input_shapes(name: str) -> tuple[InputShape, ...] | None:
    """Input shapes (C, H, W) ``name`` accepts, or None if any shape works."""
    _check_name(name)
    return _INPUT_SHAPES[name]


def check_compatible(name: str, input_shape: tuple[int, ...]) -> str | None:
    """Error message if ``name`` cannot take ``input_shape`` else None.

    Lets config validation reject e.g. tolpegin-cifar-cnn on MNIST before
    any training starts.
    """
    if name not in MODELS:
        return f"unknown model {name!r}; allowed: {', '.join(MODEL_NAMES)}"
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        return f"model {name!r}: input_shape must be (C, H, W) with positive sizes, got {shape}"
    allowed = _INPUT_SHAPES[name]
    if name in _MIN_SIDE and min(shape[1:]) < _MIN_SIDE[name]:
        return (f"model {name!r} needs images of at least {_MIN_SIDE[name]}x{_MIN_SIDE[name]} "
                f"(its stride-2 stages would shrink {shape[1]}x{shape[2]} to almost nothing), got {shape}")
    if allowed is not None and shape not in allowed:
        return f"model {name!r} requires input shape in {list(allowed)}, got {shape}"
    return None


#: Models with dropout layers; ``dropout`` is rejected for the others (they have none).
DROPOUT_MODELS: tuple[str, ...] = ("lfighter-cnn",)


def build_model(name: str, num_classes: int, input_shape: tuple[int, int, int],
                dropout: float | None = None) -> nn.Module:
    """Build model ``name`` for ``num_classes`` outputs on (C, H, W) inputs.

    ``dropout`` (None = the model's default) only applies to :data:`DROPOUT_MODELS`.
    """
    _check_name(name)
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    err = check_compatible(name, input_shape)
    if err is not None:
        raise ValueError(err)
    shape: InputShape = tuple(int(s) for s in input_shape)  # type: ignore[assignment]
    if dropout is not None and dropout > 0 and name not in DROPOUT_MODELS:
        raise ValueError(f"model {name!r} has no dropout layers (dropout applies to {', '.join(DROPOUT_MODELS)})")
    if dropout is not None and name in DROPOUT_MODELS:
        return MODELS[name](num_classes, shape, dropout=dropout)  # type: ignore[call-arg]
    return MODELS[name](num_classes, shape)


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not; BN running stats excluded)."""
    return sum(p.numel() for p in model.parameters())
