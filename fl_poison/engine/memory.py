"""How many clients one batched computation may hold: a per-client memory estimate and chunks under a budget.

Why: :func:`fl_poison.batched_training.train_many` keeps, per client, a copy of
the parameters, their gradients, two optimiser buffers and the step's new
values, the client's data and one batch of activations (forward values and
their gradients). A round of 1,000 clients of a ResNet does not fit a GPU;
chunks of it do. The activations are measured on the model itself (forward
hooks on one batch), and on a CUDA device the whole per-client cost is also
measured with the allocator's peak, the larger figure being used.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from fl_poison.training import TrainSettings

MIB = 1 << 20
#: per-client copies of the parameters train_many holds: weights, gradients, two optimiser buffers, the new
#: values of a step and the weight-decayed gradient
PARAM_COPIES = 6
#: activation bytes per forward value: the value, its gradient, and vmap's batched temporaries
ACTIVATION_FACTOR = 3
#: share of the free memory an automatic budget takes
AUTO_SHARE = 0.8


def sample_bytes(sample_shape: Sequence[int]) -> int:
    """Bytes of one float32 training sample and its int64 label."""
    return 4 * math.prod(sample_shape) + 8


def activation_bytes(model: nn.Module, sample_shape: Sequence[int], batch: int) -> int:
    """Bytes of every leaf module's output for one batch, measured by running the model on it."""
    total = 0

    def hook(_module, _inputs, output):
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel() * output.element_size()

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()  # the same activation sizes, and BatchNorm's running statistics stay as they are
    try:
        with torch.no_grad():
            model(torch.zeros(batch, *sample_shape, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total


def client_fixed_bytes(model: nn.Module, settings: TrainSettings, sample_shape: Sequence[int]) -> int:
    """Bytes one client costs whatever its data: parameter copies, optimiser state, one batch and its activations."""
    params = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    batch = settings.batch_size
    estimate = (PARAM_COPIES * params + ACTIVATION_FACTOR * activation_bytes(model, sample_shape, batch)
                + batch * sample_bytes(sample_shape))
    device = next(model.parameters()).device
    if device.type == "cuda":
        estimate = max(estimate, measured_cuda_bytes(model, settings, sample_shape))
    return int(estimate)


def measured_cuda_bytes(model: nn.Module, settings: TrainSettings, sample_shape: Sequence[int]) -> int:
    """The allocator's peak of one training step for two clients minus that for one: one more client's cost."""
    from fl_poison.batched_training import train_many

    s = TrainSettings(1, settings.batch_size, settings.lr, settings.momentum, settings.weight_decay,
                      settings.optimizer)
    batch = settings.batch_size
    data = (torch.zeros(batch, *sample_shape), torch.zeros(batch, dtype=torch.long))
    peaks = []
    for k in (1, 2):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        train_many(model, [data] * k, s, list(range(k)))
        torch.cuda.synchronize()
        peaks.append(torch.cuda.max_memory_allocated() - base)
    return max(0, peaks[1] - peaks[0])


def budget_bytes(memory_mb: int, device: torch.device) -> int:
    """The ``engine-memory-mb`` budget in bytes; -1 = :data:`AUTO_SHARE` of the device's free memory."""
    if memory_mb != -1:
        return memory_mb * MIB
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
    else:
        import os

        free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    return int(AUTO_SHARE * free)


def chunks(sizes: Sequence[int], fixed: int, per_sample: int, budget: int) -> list[list[int]]:
    """Consecutive groups of client positions whose ``fixed + size * per_sample`` sum stays within ``budget``.

    A client that alone exceeds the budget still gets a chunk of its own (the
    configuration check refuses budgets smaller than the largest client first).
    """
    out: list[list[int]] = []
    used = 0
    for i, n in enumerate(sizes):
        cost = fixed + n * per_sample
        if out and used + cost <= budget:
            out[-1].append(i)
            used += cost
        else:
            out.append([i])
            used = cost
    return out
