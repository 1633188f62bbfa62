"""Build into a temporary folder beside the target, then rename it into place.

A demo folder is "complete" when it has ``BUILD_INFO.json``. If the build dies half way
(Ctrl-C, a failed accuracy check, a full disk) the target must not hold a partial demo
that a later ``build`` or ``berth serve`` would take for a finished one. Building beside
the target (same filesystem) makes the final step a cheap ``rename``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path


class DemoBuildError(RuntimeError):
    """The demo could not be built (a model failed a check, or the target is unsafe)."""


def check_replaceable(out_dir: Path, marker: str) -> None:
    """Refuse to replace a non-empty folder that is not a previous demo build.

    ``force`` rebuilds a demo; it must never delete someone's unrelated directory
    because they passed the wrong path.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise DemoBuildError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / marker).is_file():
        raise DemoBuildError(f"{out_dir} is not empty and holds no {marker}; refusing to replace it")


@contextlib.contextmanager
def staged_dir(out_dir: Path) -> Iterator[Path]:
    """Yield an empty temp folder beside ``out_dir``; on success swap it into place.

    On an exception the temp folder is removed and ``out_dir`` is left untouched.
    """
    out_dir = out_dir.absolute()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = out_dir.parent / f".{out_dir.name}.building-{tag}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out_dir.parent / f".{out_dir.name}.old-{tag}"
    if out_dir.exists():
        out_dir.rename(old)
    try:
        tmp.rename(out_dir)
    except BaseException:
        if old.exists() and not out_dir.exists():
            old.rename(out_dir)  # put the previous build back
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


__all__ = ["DemoBuildError", "check_replaceable", "staged_dir"]
