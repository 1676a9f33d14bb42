"""Many clients' local training as one vectorised computation (``torch.func`` + ``vmap``).

Why: on a GPU a round of 100 small clients is one batched computation instead
of 100 small ones. :func:`train_many` reproduces :func:`fl_poison.training.train_local`
for each client, up to float rounding:

* the same shuffles: client ``k`` draws ``randperm(n_k)`` once per epoch from
  ``torch.Generator().manual_seed(seeds[k])``, exactly as ``train_local``;
* the same batches: ``perm[start:start + B]``, the last one short; clients of
  different sizes run different numbers of steps. Steps are aligned in time,
  a client's padded samples have mask 0 (they add nothing to its mean loss)
  and a client with no batch left at a step is *frozen* (parameters and
  optimiser state kept), so no sample is dropped or repeated;
* the same optimisers: SGD with momentum / dampening 0 / weight decay, and
  Adam (per-client step counts), written out as ``torch.optim`` computes them;
* the same metrics: mean loss and accuracy over the last local epoch.

Models with BatchNorm or dropout (p > 0), and augmentation, are not supported
(:func:`supports` says so, the caller falls back to ``train_local``): their
per-client randomness / running statistics do not vectorise exactly.
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from fl_poison.training import TrainSettings

_UNSUPPORTED = (nn.modules.batchnorm._NormBase, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                nn.AlphaDropout)


def supports(model: nn.Module, augment=None) -> str | None:
    """``None`` when :func:`train_many` reproduces ``train_local`` for this model, else why not."""
    if augment is not None:
        return "augmentation draws from the shuffling generator per batch"
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.p == 0:
            continue  # p = 0 is the identity (the LFighter CNN's default)
        if isinstance(m, _UNSUPPORTED):
            return f"module {name or 'model'} is {type(m).__name__} (buffers / randomness per client)"
    if any(True for _ in model.buffers()):
        return "the model has buffers"
    return None


def _schedule(sizes: Sequence[int], seeds: Sequence[int], epochs: int, batch: int):
    """Per-client batch indices ``[K, S, B]`` (local positions), mask ``[K, S, B]``, active ``[K, S]``.

    ``S`` is the largest number of steps any client takes; ``last_epoch_start[k]``
    is the step at which client ``k``'s last epoch begins (metrics are over it).
    """
    k = len(sizes)
    steps = [epochs * math.ceil(n / batch) for n in sizes]
    s_max = max(steps) if steps else 0
    idx = torch.zeros(k, s_max, batch, dtype=torch.long)
    mask = torch.zeros(k, s_max, batch)
    for c, (n, seed) in enumerate(zip(sizes, seeds)):
        if n == 0:
            continue
        gen = torch.Generator().manual_seed(int(seed))
        s = 0
        for _ in range(epochs):
            perm = torch.randperm(n, generator=gen)
            for start in range(0, n, batch):
                part = perm[start:start + batch]
                idx[c, s, :part.shape[0]] = part
                mask[c, s, :part.shape[0]] = 1.0
                s += 1
    active = mask.sum(dim=2) > 0
    last_epoch_start = [st - st // epochs if st else 0 for st in steps]
    return idx, mask, active, last_epoch_start


def train_many(
    model: nn.Module,
    datasets: Sequence[tuple[torch.Tensor, torch.Tensor]],
    settings: TrainSettings,
    seeds: Sequence[int],
) -> tuple[list[dict[str, torch.Tensor]], list[tuple[float, float]]]:
    """Train ``len(datasets)`` copies of ``model`` (its current weights) on their own data.

    Returns each client's trained parameters (``named_parameters`` names, on
    the model's device) and its ``(mean loss, accuracy)`` over the last local
    epoch (NaN for a client without data), as ``train_local`` would.
    ``model`` itself is not modified.
    """
    why = supports(model)
    if why:
        raise ValueError(f"train_many cannot reproduce train_local here: {why}")
    k = len(datasets)
    device = next(model.parameters()).device
    sizes = [int(y.shape[0]) for _, y in datasets]
    idx, mask, active, last_start = _schedule(sizes, seeds, settings.epochs, settings.batch_size)
    names = [n for n, _ in model.named_parameters()]
    if sum(sizes) == 0:
        return ([{n: p.detach().clone() for n, p in model.named_parameters()} for _ in range(k)],
                [(float("nan"), float("nan"))] * k)
    offsets = torch.tensor([0] + list(itertools.accumulate(sizes))[:-1], dtype=torch.long)
    x_all = torch.cat([x for x, _ in datasets]).to(device)
    y_all = torch.cat([y for _, y in datasets]).to(device)
    gidx = (idx + offsets.view(k, 1, 1)).clamp(max=sum(sizes) - 1).to(device)  # padding: any row, mask 0
    mask, active = mask.to(device), active.to(device)

    params = {n: p.detach().unsqueeze(0).repeat(k, *([1] * p.dim())).clone() for n, p in model.named_parameters()}
    state1 = {n: torch.zeros_like(p) for n, p in params.items()}  # momentum buffer / Adam m
    state2 = {n: torch.zeros_like(p) for n, p in params.items()}  # Adam v
    step_count = torch.zeros(k, device=device)

    def client_loss(p, xb, yb, mb):
        logits = functional_call(model, p, (xb,))
        ce = nn.functional.cross_entropy(logits, yb, reduction="none")
        count = mb.sum().clamp(min=1.0)
        loss = (ce * mb).sum() / count
        correct = ((logits.argmax(1) == yb).to(mb.dtype) * mb).sum()
        return loss, (loss.detach(), correct)

    grad_fn = vmap(grad(client_loss, has_aux=True))
    loss_sum = torch.zeros(k, dtype=torch.float64, device=device)
    correct_sum = torch.zeros(k, dtype=torch.float64, device=device)
    seen = torch.zeros(k, dtype=torch.float64, device=device)
    last_start_t = torch.tensor(last_start, device=device)
    s = settings
    was_training = model.training
    model.train()
    for t in range(idx.shape[1]):
        xb, yb, mb = x_all[gidx[:, t]], y_all[gidx[:, t]], mask[:, t]
        grads, (loss, correct) = grad_fn(params, xb, yb, mb)
        on = active[:, t]
        step_count += on.to(step_count.dtype)
        with torch.no_grad():
            for n in names:
                shape = (k,) + (1,) * (params[n].dim() - 1)
                live = on.view(shape)
                g = grads[n]
                if s.weight_decay:
                    g = g + s.weight_decay * params[n]
                if s.optimizer == "adam":
                    m = torch.where(live, state1[n].lerp(g, 1 - 0.9), state1[n])
                    v = torch.where(live, state2[n] * 0.999 + (1 - 0.999) * g * g, state2[n])
                    tc = step_count.clamp(min=1).view(shape)
                    bc1 = 1 - 0.9 ** tc
                    bc2 = 1 - 0.999 ** tc
                    denom = v.sqrt() / bc2.sqrt() + 1e-8
                    new = params[n] - (s.lr / bc1) * m / denom
                    state1[n], state2[n] = m, v
                else:
                    if s.momentum:
                        first = (step_count == 1).view(shape)
                        buf = torch.where(first, g, s.momentum * state1[n] + g)
                        state1[n] = torch.where(live, buf, state1[n])
                        g = buf
                    new = params[n] - s.lr * g
                params[n] = torch.where(live, new, params[n])
            in_last = on & (t >= last_start_t)
            b = mb.sum(dim=1).double()
            loss_sum += torch.where(in_last, loss.double() * b, 0.0)
            correct_sum += torch.where(in_last, correct.double(), 0.0)
            seen += torch.where(in_last, b, 0.0)
    model.train(was_training)
    metrics = [(float(loss_sum[c] / seen[c]), float(correct_sum[c] / seen[c])) if sizes[c] else
               (float("nan"), float("nan")) for c in range(k)]
    return [{n: params[n][c] for n in names} for c in range(k)], metrics
