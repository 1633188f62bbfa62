"""Shared bits for the benchmarks: the demo model path and result formatting."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = Path(os.environ.get("BERTH_DEMO_DIR", ROOT / "var" / "demo"))


def digits_model() -> Path:
    """The demo digits classifier (ONNX), building the demo first if it is missing."""
    path = DEMO_DIR / "models" / "digits" / "1" / "model.onnx"
    if not path.exists():
        sys.path.insert(0, str(ROOT / "src"))
        from berth.demo import build

        build(DEMO_DIR)
    return path


def table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [headers, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |", "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells[1:]]
    return "\n".join(lines)
