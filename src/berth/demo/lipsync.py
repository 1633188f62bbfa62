"""Lip-sync UNet "tenants": several same-shaped models with different weights.

They stand in for per-customer fine-tunes of one lip-sync network, which is what makes
the multi-model server interesting: each tenant is a separate model competing for
memory, so using them all exercises loading, LRU eviction and batching of a model that
is heavy per frame. The weights are an untrained seeded init (a different seed per
tenant gives different outputs); only the compute and memory profile matter here.

Interface, fixed by the lip-sync clients: ``visual`` ``[B, 6, 320, 320]`` (reference
frame + masked target frame, RGB each) and ``audio`` ``[B, 32, 16, 16]`` (a mel
feature block) -> ``output`` ``[B, 3, 320, 320]`` in (0, 1).

Size: a 16/32/64/128-channel encoder with stride-2 convs down to a 20x20 bottleneck,
the audio block projected by a stride-2 conv + linear to a per-channel scale and shift
applied at the bottleneck (FiLM), and a decoder that upsamples and concatenates the
skip connections. About 1.7 M parameters, ~20-30 ms per frame in onnxruntime on two
threads: heavy enough for batching to matter, light enough for CI.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .exporting import ExportReport, Timing, export_onnx, ort_session, time_onnx
from .layout import ModelEntry, model_file
from .repro import seed_everything
from .sizing import estimate_memory_mb

SIDE = 320
MAX_BATCH = 8
MAX_QUEUE_DELAY_MS = 2


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.ReLU())


def _down(cin: int, cout: int) -> nn.Sequential:
    """Halve the resolution (stride-2 conv), then refine at the new scale."""
    return nn.Sequential(_conv(cin, cout, 2), _conv(cout, cout))


def _up_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(_conv(cin, cout), _conv(cout, cout))


class LipSyncUNet(nn.Module):
    """UNet from ``visual`` + ``audio`` to an RGB frame; see the module docstring."""

    def __init__(self, widths: tuple[int, int, int, int] = (16, 32, 64, 128), stem: int = 16) -> None:
        super().__init__()
        w1, w2, w3, w4 = widths
        self.stem = _conv(6, stem)  # 320
        self.down1 = _down(stem, w1)  # 160
        self.down2 = _down(w1, w2)  # 80
        self.down3 = _down(w2, w3)  # 40
        self.down4 = _down(w3, w4)  # 20: bottleneck
        self.audio = nn.Sequential(
            nn.Conv2d(32, 64, 3, 2, 1),  # [B,64,8,8]
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * 8 * 8, 2 * w4),  # per-channel scale and shift
        )
        self.mid = _conv(w4, w4)
        self.up3 = _up_block(w4 + w3, w3)  # 40
        self.up2 = _up_block(w3 + w2, w2)  # 80
        self.up1 = _up_block(w2 + w1, w1)  # 160
        self.up0 = _up_block(w1 + stem, stem)  # 320
        self.head = nn.Conv2d(stem, 3, 3, 1, 1)

    @staticmethod
    def _up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="nearest")

    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        s0 = self.stem(visual)
        s1 = self.down1(s0)
        s2 = self.down2(s1)
        s3 = self.down3(s2)
        x = self.down4(s3)
        scale, shift = self.audio(audio).chunk(2, dim=1)
        x = self.mid(x * (1.0 + scale[:, :, None, None]) + shift[:, :, None, None])
        x = self.up3(torch.cat([self._up(x), s3], dim=1))
        x = self.up2(torch.cat([self._up(x), s2], dim=1))
        x = self.up1(torch.cat([self._up(x), s1], dim=1))
        x = self.up0(torch.cat([self._up(x), s0], dim=1))
        return torch.sigmoid(self.head(x))


def tenant_seed(name: str) -> int:
    """A stable per-tenant seed (``hash()`` is salted per process, crc32 is not)."""
    return zlib.crc32(name.encode("utf-8"))


def example_inputs(batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "visual": torch.rand(batch, 6, SIDE, SIDE, generator=gen),
        "audio": torch.randn(batch, 32, 16, 16, generator=gen),
    }


@dataclass
class TenantResult:
    """One exported tenant: its config entry, export report and measured speed."""

    entry: ModelEntry
    report: ExportReport
    timing: Timing
    seed: int
    parameters: int


def build_tenant(name: str, root: Path, *, timing_runs: int = 8) -> TenantResult:
    """Initialise ``name``'s UNet from its seed, export, verify and time it (batch 1)."""
    seed = tenant_seed(name)
    seed_everything(seed)
    model = LipSyncUNet().eval()
    example = example_inputs()
    report = export_onnx(model, example, ["output"], model_file(root, name, ".onnx"))
    feeds = {k: v[:1].numpy() for k, v in example.items()}
    timing = time_onnx(report.path, feeds, runs=timing_runs)
    entry = ModelEntry(
        name=name,
        backend="onnx",
        suffix=".onnx",
        max_batch_size=MAX_BATCH,
        max_queue_delay_ms=MAX_QUEUE_DELAY_MS,
        memory_estimate_mb=estimate_memory_mb(model, {k: v[:1] for k, v in example.items()}, report.bytes, MAX_BATCH),
        description=f"Lip-sync UNet tenant '{name}': visual 6x320x320 + audio 32x16x16 -> RGB 3x320x320",
    )
    params = int(sum(p.numel() for p in model.parameters()))
    return TenantResult(entry, report, timing, seed, params)


def outputs_differ(a: Path, b: Path) -> bool:
    """True if two tenant files give different outputs on the same input (distinct weights)."""
    feeds = {k: v[:1].numpy() for k, v in example_inputs(seed=1).items()}
    out_a = ort_session(a).run(None, feeds)[0]
    out_b = ort_session(b).run(None, feeds)[0]
    return bool(np.max(np.abs(out_a - out_b)) > 1e-3)


__all__ = ["LipSyncUNet", "TenantResult", "build_tenant", "example_inputs", "outputs_differ", "tenant_seed"]
