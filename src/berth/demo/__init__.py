"""The demo model repository: ``berth demo build`` makes it offline, ``berth serve`` serves it.

Everything is built from what ships with the installed packages (scikit-learn's digits,
a synthetic EMG generator, seeded random UNets), so a fresh checkout can produce a
working demo with no network. Layout, config keys and the build steps live in small
modules: :mod:`.layout` (paths and YAML), :mod:`.digits`, :mod:`.emg`,
:mod:`.emg_signal`, :mod:`.lipsync` (the models), :mod:`.exporting` (ONNX/TorchScript
export + verification), :mod:`.staging` (atomic publish) and :mod:`.builder`.

Importing this package does not import torch; :func:`build` does, when it has to build.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .layout import BUILD_INFO, DEMO_VERSION
from .staging import DemoBuildError


def build(out_dir: Path, *, force: bool = False, log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Build the demo into ``out_dir`` (or return the existing build); see :func:`.builder.build`."""
    from .builder import build as _build

    return _build(Path(out_dir), force=force, log=log)


__all__ = ["BUILD_INFO", "DEMO_VERSION", "DemoBuildError", "build"]
