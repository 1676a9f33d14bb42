"""Generator networks and the math of the GAN reconstruction attack (Hitaj et al. 2017; Zhang et al. 2019).

Pure functions and small modules, no run config: :mod:`clients.attacks.gan`
wires them into a client's round.

* :class:`DCGANGenerator` -- Hitaj et al. use a DCGAN generator: a linear map
  of the latent vector to a ``(2w, H/4, W/4)`` feature map, two stride-2
  transposed convolutions with BatchNorm + ReLU, ``tanh`` output. It produces
  28x28x1 (MNIST / Fashion-MNIST), 32x32x3 (CIFAR-10) and 8x8x1 (sklearn
  digits): any square image whose side is a multiple of 4.
* :class:`MLPGenerator` -- a two-layer perceptron for any shape (small tests).

Both emit pixels in [0, 1] (``(tanh + 1) / 2``) and then apply the data set's
normalisation, so a generated image lives where the federation's real inputs do.

:func:`train_generator` is Hitaj et al.'s generator step: the received global
model is the discriminator, *fixed* (evaluation mode, no gradient into its
weights); the generator is trained so that the discriminator classifies its
output as class G (cross-entropy towards G). The discriminator's own update --
learning that generated images are the extra "fake" class -- happens in the
adversary's ordinary local training (see the plug-in).
"""

from __future__ import annotations

import copy
import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

GENERATORS = ("dcgan", "mlp")


def shape_problem(kind: str, shape: Sequence[int]) -> str | None:
    """Why generator ``kind`` cannot produce images of ``shape`` (C, H, W); None when it can."""
    if kind not in GENERATORS:
        return f"one of {', '.join(GENERATORS)}"
    if len(shape) != 3 or min(shape) < 1:
        return f"a (C, H, W) image shape, got {tuple(shape)}"
    c, h, w = (int(s) for s in shape)
    if kind == "dcgan" and (h != w or h % 4 or c > 4):
        return (f"gan-generator=dcgan makes square images whose side is a multiple of 4 with 1-4 channels; "
                f"the data set's images are {c}x{h}x{w} (use gan-generator=mlp)")
    return None


def generator_size(kind: str, latent: int, width: int, shape: Sequence[int]) -> tuple[int, int]:
    """``(parameters, activation floats per sample)`` of the generator :func:`build_generator` makes, unbuilt.

    Lets a config check bound a generator that could never be allocated
    (``gan-latent=10**9`` is a 2 TB first layer) without trying.
    """
    c, h, w = (int(s) for s in shape)
    if kind == "dcgan":
        s = h // 4
        hid = 2 * width * s * s
        params = (latent + 1) * hid + 2 * hid + 2 * width * width * 16 + width + 2 * width + width * c * 16 + c
        return params, 3 * hid + 3 * width * (2 * s) ** 2 + 2 * c * h * h
    pixels = c * h * w
    return (latent + 1) * 4 * width + (4 * width + 1) * pixels, 2 * 4 * width + 2 * pixels


def round_floats(kind: str, latent: int, width: int, shape: Sequence[int], batch: int, images: int) -> int:
    """Float32 values one adversarial round holds at its peak, roughly (an upper-bound style estimate).

    The generator with its gradients, Adam moments and stored copy (8x its
    parameters); a generator batch through generator and discriminator
    (forward + backward); ``images`` generated at once, each with its latent
    vector, the image and its copy in the poisoned training set.
    """
    params, acts = generator_size(kind, latent, width, shape)
    pixels = math.prod(int(s) for s in shape)
    return 8 * params + 3 * batch * (latent + acts + pixels) + images * (latent + 2 * pixels)


class _Pixels(nn.Module):
    """``tanh`` output -> pixels in [0, 1] -> the data set's normalisation."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return ((torch.tanh(t) + 1) / 2 - self.mean) / self.std


class DCGANGenerator(nn.Module):
    """DCGAN-like generator (Radford et al.; Hitaj et al.'s choice): latent -> (C, H, W)."""

    def __init__(self, latent: int, width: int, shape: Sequence[int],
                 mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,)) -> None:
        super().__init__()
        problem = shape_problem("dcgan", shape)
        if problem:
            raise ValueError(problem)
        c, h, _ = (int(s) for s in shape)
        self.latent, self.shape, s = latent, (c, h, h), h // 4
        self.fc = nn.Sequential(nn.Linear(latent, 2 * width * s * s), nn.BatchNorm1d(2 * width * s * s), nn.ReLU())
        self.up = nn.Sequential(
            nn.Unflatten(1, (2 * width, s, s)),
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.ConvTranspose2d(width, c, 4, stride=2, padding=1))
        self.pixels = _Pixels(mean, std)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.pixels(self.up(self.fc(z)))


class MLPGenerator(nn.Module):
    """Two-layer perceptron generator: any image shape."""

    def __init__(self, latent: int, width: int, shape: Sequence[int],
                 mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,)) -> None:
        super().__init__()
        self.latent, self.shape = latent, tuple(int(s) for s in shape)
        self.net = nn.Sequential(nn.Linear(latent, 4 * width), nn.ReLU(), nn.Linear(4 * width, math.prod(self.shape)),
                                 nn.Unflatten(1, self.shape))
        self.pixels = _Pixels(mean, std)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.pixels(self.net(z))


def build_generator(kind: str, latent: int, width: int, shape: Sequence[int], mean: Sequence[float] = (0.0,),
                    std: Sequence[float] = (1.0,), seed: int = 0) -> nn.Module:
    """A freshly initialised generator (weights fixed by ``seed``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cls = DCGANGenerator if kind == "dcgan" else MLPGenerator
        return cls(latent, width, shape, mean, std)


def make_optimizer(gen: nn.Module, lr: float) -> torch.optim.Adam:
    """Adam with DCGAN's beta1 = 0.5."""
    return torch.optim.Adam(gen.parameters(), lr=lr, betas=(0.5, 0.999))


def latents(n: int, latent: int, seed: int) -> torch.Tensor:
    """``n`` standard-normal latent vectors from ``seed`` alone."""
    return torch.randn(n, latent, generator=torch.Generator().manual_seed(int(seed) % (2 ** 63)))


def frozen(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in evaluation mode with no gradient into its weights: the fixed discriminator."""
    d = copy.deepcopy(model).eval()
    for p in d.parameters():
        p.requires_grad_(False)
    return d


def generator_loss(gen: nn.Module, disc: nn.Module, z: torch.Tensor, cls: int) -> torch.Tensor:
    """Cross-entropy of the discriminator's output on ``gen(z)`` towards class ``cls`` (what G minimises)."""
    logits = disc(gen(z))
    return nn.functional.cross_entropy(logits, torch.full((z.shape[0],), cls, dtype=torch.long, device=z.device))


def train_generator(gen: nn.Module, disc: nn.Module, opt: torch.optim.Optimizer, cls: int, steps: int,
                    batch: int, seed: int) -> list[float]:
    """``steps`` Adam steps of ``gen`` against the fixed ``disc`` towards class ``cls``; the loss of each step.

    ``disc`` should come from :func:`frozen`: its weights are not touched.
    Latents are drawn from ``seed``, so the same state and seed give the same generator.
    """
    gen.train()
    rng = torch.Generator().manual_seed(int(seed) % (2 ** 63))
    device = next(gen.parameters()).device
    losses = []
    for _ in range(steps):
        z = torch.randn(batch, gen.latent, generator=rng).to(device)
        opt.zero_grad(set_to_none=True)
        loss = generator_loss(gen, disc, z, cls)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


@torch.no_grad()
def generate(gen: nn.Module, n: int, seed: int, batch: int = 256) -> torch.Tensor:
    """``n`` generated (normalised) images from latents drawn from ``seed``.

    Generated in training mode (batch statistics), as DCGAN samples during
    training; the running statistics this updates are not used anywhere.
    """
    gen.train()
    if n <= 0:
        return torch.zeros((0, *gen.shape))
    z = latents(n, gen.latent, seed).to(next(gen.parameters()).device)
    return torch.cat([gen(z[i:i + batch]) for i in range(0, n, batch)]).cpu()


@torch.no_grad()
def recognition_rate(model: nn.Module, images: torch.Tensor, cls: int, batch: int = 1000) -> float:
    """Share of ``images`` that ``model`` (evaluation mode) classifies as ``cls``."""
    if int(images.shape[0]) == 0:
        return float("nan")
    model.eval()
    device = next(model.parameters()).device
    hits = sum(int((model(images[i:i + batch].to(device)).argmax(1) == cls).sum())
               for i in range(0, int(images.shape[0]), batch))
    return hits / int(images.shape[0])


def pack_state(gen: nn.Module, opt: torch.optim.Optimizer) -> dict[str, np.ndarray]:
    """Generator weights (``g.*``) and Adam's moments (``o.<i>.*``) as arrays, for the node's store."""
    out = {f"g.{k}": v.detach().cpu().numpy().copy() for k, v in gen.state_dict().items()}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            out[f"o.{i}.{k}"] = torch.as_tensor(v).detach().cpu().numpy().copy()
    return out


def unpack_state(gen: nn.Module, opt: torch.optim.Optimizer, arrays: dict[str, np.ndarray]) -> None:
    """Inverse of :func:`pack_state` (in place)."""
    gen.load_state_dict({k[2:]: torch.from_numpy(np.asarray(v).copy()) for k, v in arrays.items()
                         if k.startswith("g.")}, strict=True)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in arrays.items():
        if k.startswith("o."):
            _, i, name = k.split(".", 2)
            state.setdefault(int(i), {})[name] = torch.from_numpy(np.asarray(v).copy())
    sd = opt.state_dict()
    opt.load_state_dict({"state": state, "param_groups": sd["param_groups"]})


def to_pixels(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Normalised ``[N, C, H, W]`` images back to pixels in [0, 1] (for the sample grid)."""
    m = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    return np.clip(np.asarray(images, dtype=np.float32) * s + m, 0.0, 1.0)
