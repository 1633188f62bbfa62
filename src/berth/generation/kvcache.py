"""The running batch's KV cache: left-padded, rebuilt only when sequences join or leave.

Every sequence in the batch has the same cache length ``T``; a sequence with fewer
tokens is padded on the left and its padding is masked out (``attention_mask`` 0).
Positions are passed explicitly per sequence, so padding never shifts a sequence's
rotary or learned position embeddings: each row computes what it would compute alone.

- join: a new sequence's prefill cache (batch 1, its own length) and the batch's cache
  are both left-padded to the longer length and concatenated along the batch axis;
- leave: the remaining rows are selected, then leading columns that are padding for
  every remaining row are cut off, so the cache does not keep a departed sequence's
  length.

``transformers`` stores the cache as a :class:`~transformers.DynamicCache` whose layers
hold ``keys``/``values`` tensors ``[batch, kv_heads, T, head_dim]`` (older releases:
``key_cache``/``value_cache`` lists); :func:`layers` and :func:`set_layers` hide that.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def layers(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))  # transformers < 4.56


def set_layers(cache: Any, tensors: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    if hasattr(cache, "layers"):
        for layer, (keys, values) in zip(cache.layers, tensors):
            layer.keys = keys
            layer.values = values
    else:
        cache.key_cache = [k for k, _ in tensors]
        cache.value_cache = [v for _, v in tensors]


def _left_pad(tensor: torch.Tensor, pad: int, dim: int) -> torch.Tensor:
    if pad == 0:
        return tensor
    # F.pad counts dimensions from the last one, in (left, right) pairs
    spec = [0, 0] * (tensor.dim() - 1 - dim % tensor.dim()) + [pad, 0]
    return F.pad(tensor, spec)


class BatchCache:
    """The cache object handed to the model plus the 2-D attention mask ``[B, T]``."""

    def __init__(self) -> None:
        self.cache: Any = None
        self.mask: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return 0 if self.mask is None else int(self.mask.shape[1])

    @property
    def size(self) -> int:
        return 0 if self.mask is None else int(self.mask.shape[0])

    def join(self, cache: Any, length: int, device: torch.device) -> None:
        """Append a batch-1 cache holding ``length`` tokens as the last row."""
        mask = torch.ones((1, length), dtype=torch.long, device=device)
        if self.cache is None:
            self.cache, self.mask = cache, mask
            return
        assert self.mask is not None
        total = max(self.length, length)
        grow_old, grow_new = total - self.length, total - length
        merged = [
            (
                torch.cat([_left_pad(k_old, grow_old, 2), _left_pad(k_new, grow_new, 2)], dim=0),
                torch.cat([_left_pad(v_old, grow_old, 2), _left_pad(v_new, grow_new, 2)], dim=0),
            )
            for (k_old, v_old), (k_new, v_new) in zip(layers(self.cache), layers(cache))
        ]
        set_layers(self.cache, merged)
        self.mask = torch.cat([_left_pad(self.mask, grow_old, 1), _left_pad(mask, grow_new, 1)], dim=0)

    def keep(self, rows: list[int]) -> None:
        """Keep only ``rows`` (in that order); drop all-padding leading columns."""
        if not rows:
            self.cache = None
            self.mask = None
            return
        assert self.mask is not None
        index = torch.tensor(rows, dtype=torch.long, device=self.mask.device)
        mask = self.mask.index_select(0, index)
        used = mask.any(dim=0).nonzero()
        start = int(used[0]) if used.numel() else mask.shape[1]
        set_layers(
            self.cache,
            [(k.index_select(0, index)[:, :, start:], v.index_select(0, index)[:, :, start:]) for k, v in layers(self.cache)],
        )
        self.mask = mask[:, start:]

    def extended_mask(self) -> torch.Tensor:
        """The mask for a decode step: every row attends to its new token too."""
        assert self.mask is not None
        return torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1))], dim=1)

    def advance(self, mask: torch.Tensor) -> None:
        self.mask = mask
