"""``memory_estimate_mb`` for each model's ``config.yaml``.

The registry admits a model before it can measure it, so it needs an up-front guess
of what loading it will cost, and the demo's ``max_memory_gb`` is derived from these
guesses. The estimate is deliberately on the high side of what onnxruntime or torch
actually take: weights (counted twice: the file's bytes while parsing plus the
runtime's own copy), the layer outputs for a full ``max_batch_size`` batch, and a fixed
per-session overhead.

Activations dominate for the lip-sync UNet. The sum of every layer's output is an upper
bound that a memory planner never reaches, since it reuses buffers; calibrated on the
demo UNet (onnxruntime 1.32, CPU, batch 8: about 270 MB of RSS growth against 520 MB of
summed layer outputs) half of that sum is kept, see :data:`ACTIVATION_REUSE`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

#: per-model runtime overhead in MB (session objects, arena slack, thread scratch)
SESSION_OVERHEAD_MB = 8.0
#: fraction of the summed layer outputs that is resident at peak (buffer reuse)
ACTIVATION_REUSE = 0.5


def activation_bytes_per_item(model: torch.nn.Module, inputs: Mapping[str, torch.Tensor]) -> int:
    """Sum of every leaf module's output bytes for one batch item."""
    total = 0
    batch = next(iter(inputs.values())).shape[0]

    def hook(_module: torch.nn.Module, _args: object, output: object) -> None:
        nonlocal total
        outs = output if isinstance(output, (tuple, list)) else (output,)
        for out in outs:
            if isinstance(out, torch.Tensor):
                total += out.numel() * out.element_size()

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(*inputs.values())
    finally:
        for handle in handles:
            handle.remove()
    input_bytes = sum(t.numel() * t.element_size() for t in inputs.values())
    return (total + input_bytes) // batch


def estimate_memory_mb(
    model: torch.nn.Module,
    inputs: Mapping[str, torch.Tensor],
    weight_bytes: int,
    max_batch_size: int,
) -> int:
    """Estimated resident MB of ``model`` served at ``max_batch_size``; see module doc."""
    activations = ACTIVATION_REUSE * activation_bytes_per_item(model, inputs) * max_batch_size
    mb = SESSION_OVERHEAD_MB + (2 * weight_bytes + activations) / 2**20
    return int(math.ceil(mb))


__all__ = ["ACTIVATION_REUSE", "SESSION_OVERHEAD_MB", "activation_bytes_per_item", "estimate_memory_mb"]
