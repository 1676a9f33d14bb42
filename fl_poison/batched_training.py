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
* the same metrics: mean loss and accuracy over the last local epoch;
* the same BatchNorm: each client normalises with the statistics of its own
  batch (its real samples only: a padded row has mask 0 there too) and keeps
  its own running mean / variance (``torch``'s update: momentum, unbiased
  variance) and ``num_batches_tracked``, returned with its parameters.

Dropout (p > 0), BatchNorm with ``momentum=None`` (a cumulative average),
other buffers, and augmentation are not supported (:func:`supports` says so,
the caller falls back to ``train_local``): their per-client randomness does
not vectorise exactly.
"""

from __future__ import annotations

import copy
import itertools
import math
from typing import Sequence

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from fl_poison.training import TrainSettings

_UNSUPPORTED = (nn.modules.batchnorm._NormBase, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                nn.AlphaDropout)
#: the normalisation layers reproduced per client (masked batch statistics, own running statistics)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _batch_norms(model: nn.Module) -> dict[str, nn.modules.batchnorm._BatchNorm]:
    return {name: m for name, m in model.named_modules() if type(m) in BATCH_NORMS}


def supports(model: nn.Module, augment=None) -> str | None:
    """``None`` when :func:`train_many` reproduces ``train_local`` for this model, else why not."""
    if augment is not None:
        return "augmentation draws from the shuffling generator per batch"
    norms = _batch_norms(model)
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.p == 0:
            continue  # p = 0 is the identity (the LFighter CNN's default)
        if name in norms:
            if m.track_running_stats and m.momentum is None:
                return (f"module {name} is {type(m).__name__} with momentum=None (a cumulative average of "
                        "batch statistics)")
            continue
        if isinstance(m, _UNSUPPORTED):
            return f"module {name or 'model'} is {type(m).__name__} (buffers / randomness per client)"
    own = {f"{name}.{b}" for name, m in norms.items() for b, _ in m.named_buffers(recurse=False)}
    other = [n for n, _ in model.named_buffers() if n not in own]
    if other:
        return f"the model has buffers other than BatchNorm's running statistics ({other[0]})"
    return None


class _Masks:
    """What the masked BatchNorm forwards share inside one client's step: its batch mask, the new statistics."""

    def __init__(self) -> None:
        self.mask: torch.Tensor | None = None
        self.stats: dict[str, torch.Tensor] = {}


def _masked_batch_norm(module: nn.modules.batchnorm._BatchNorm, name: str, masks: _Masks):
    """``module``'s training-mode forward over the rows whose mask is 1 (``torch``'s arithmetic, written out).

    Statistics over the batch and spatial axes of the real rows: the biased variance normalises, the unbiased
    one enters the running variance, as in ``torch.nn.functional.batch_norm``. The new running statistics are
    left in ``masks.stats`` (``functional_call`` runs this with the client's own buffers).
    """

    def forward(x: torch.Tensor) -> torch.Tensor:
        w = masks.mask.to(x.dtype).view((-1,) + (1,) * (x.dim() - 1))
        dims = [0] + list(range(2, x.dim()))
        count = masks.mask.to(x.dtype).sum() * math.prod(x.shape[2:])
        per_channel = (1, -1) + (1,) * (x.dim() - 2)
        mean = (x * w).sum(dims) / count.clamp(min=1.0)
        centred = x - mean.view(per_channel)
        var = (centred * centred * w).sum(dims) / count.clamp(min=1.0)
        out = centred / torch.sqrt(var.view(per_channel) + module.eps)
        if module.affine:
            out = out * module.weight.view(per_channel) + module.bias.view(per_channel)
        if module.track_running_stats:
            mom = module.momentum
            unbiased = var * count / (count - 1.0).clamp(min=1.0)
            masks.stats[f"{name}.running_mean"] = (1 - mom) * module.running_mean + mom * mean.detach()
            masks.stats[f"{name}.running_var"] = (1 - mom) * module.running_var + mom * unbiased.detach()
        return out

    return forward


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
    the model's device; with BatchNorm also its buffers, ``named_buffers``
    names) and its ``(mean loss, accuracy)`` over the last local epoch (NaN
    for a client without data), as ``train_local`` would.
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
        return ([{n: p.detach().clone() for n, p in [*model.named_parameters(), *model.named_buffers()]}
                 for _ in range(k)], [(float("nan"), float("nan"))] * k)
    offsets = torch.tensor([0] + list(itertools.accumulate(sizes))[:-1], dtype=torch.long)
    x_all = torch.cat([x for x, _ in datasets]).to(device)
    y_all = torch.cat([y for _, y in datasets]).to(device)
    gidx = (idx + offsets.view(k, 1, 1)).clamp(max=sum(sizes) - 1).to(device)  # padding: any row, mask 0
    mask, active = mask.to(device), active.to(device)

    params = {n: p.detach().unsqueeze(0).repeat(k, *([1] * p.dim())).clone() for n, p in model.named_parameters()}
    state1 = {n: torch.zeros_like(p) for n, p in params.items()}  # momentum buffer / Adam m
    state2 = {n: torch.zeros_like(p) for n, p in params.items()}  # Adam v
    step_count = torch.zeros(k, device=device)
    masks, net = _Masks(), model
    norms = _batch_norms(model)
    if norms:  # a copy whose BatchNorm layers see each client's mask; the running statistics are per client
        net = copy.deepcopy(model)
        for name, m in _batch_norms(net).items():
            m.forward = _masked_batch_norm(m, name, masks)
    running = {n: b.detach().unsqueeze(0).repeat(k, *([1] * b.dim())).clone() for n, b in model.named_buffers()
               if n.endswith(("running_mean", "running_var"))}
    tracked = {n: b.detach().clone() for n, b in model.named_buffers() if n.endswith("num_batches_tracked")}

    def client_loss(p, bufs, xb, yb, mb):
        masks.mask, masks.stats = mb, {}
        logits = functional_call(net, {**p, **bufs}, (xb,))
        ce = nn.functional.cross_entropy(logits, yb, reduction="none")
        count = mb.sum().clamp(min=1.0)
        loss = (ce * mb).sum() / count
        correct = ((logits.argmax(1) == yb).to(mb.dtype) * mb).sum()
        return loss, (loss.detach(), correct, dict(masks.stats))

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
        grads, (loss, correct, stats) = grad_fn(params, running, xb, yb, mb)
        on = active[:, t]
        step_count += on.to(step_count.dtype)
        with torch.no_grad():
            for n, new_stat in stats.items():
                running[n] = torch.where(on.view((k,) + (1,) * (new_stat.dim() - 1)), new_stat, running[n])
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
    steps_taken = active.sum(dim=1)
    out = []
    for c in range(k):
        trained = {n: params[n][c] for n in names}
        trained.update({n: running[n][c] for n in running})
        trained.update({n: b + steps_taken[c].to(b.dtype) for n, b in tracked.items()})
        out.append(trained)
    return out, metrics
