"""CUDA facts without a hard dependency: device count and memory in use.

torch is optional in berth; when it is absent these report no CUDA, which is also the
truth for an onnxruntime-only install on a CPU machine.
"""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def _torch_cuda():  # type: ignore[no-untyped-def]
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda if torch.cuda.is_available() else None


def cuda_device_count() -> int:
    cuda = _torch_cuda()
    return int(cuda.device_count()) if cuda is not None else 0


def cuda_total_bytes(index: int) -> int | None:
    cuda = _torch_cuda()
    if cuda is None:
        return None
    _free, total = cuda.mem_get_info(index)
    return int(total)


def cuda_used_bytes(framework_device: str) -> int | None:
    """Bytes in use on the whole device (cudaMemGetInfo), or None off CUDA.

    Device-wide rather than torch's own allocator so onnxruntime's CUDA arena is
    counted too; loads are serialised per device, so the delta is the model's.
    """
    if not framework_device.startswith("cuda"):
        return None
    cuda = _torch_cuda()
    if cuda is None:
        return None
    index = int(framework_device.partition(":")[2] or 0)
    cuda.synchronize(index)
    free, total = cuda.mem_get_info(index)
    return int(total - free)
