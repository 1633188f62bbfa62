"""Server-side store for load-test sessions saved from the web UI (seed 000).

The client never chooses a file name: the store builds one from the time, a sanitised
model name and a random suffix. Each session is size-capped, the folder has a total
quota, and a write goes to a temporary file that is renamed into place, so a reader
never sees half a session. Saves are serialised, so concurrent saves cannot all pass
the quota check before any of them is written.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .errors import InvalidInput, PayloadTooLarge

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+|\.{2,}")


@dataclass(frozen=True)
class SavedSession:
    file_name: str
    display_path: str
    bytes: int
    model: str
    created: str


class SessionStore:
    def __init__(self, folder: Path, display_root: str, *, max_bytes: int, quota_bytes: int) -> None:
        self.folder = folder
        self.display_root = display_root.rstrip("/")
        self.max_bytes = max_bytes
        self.quota_bytes = quota_bytes
        self._lock = threading.Lock()

    def used_bytes(self) -> int:
        if not self.folder.is_dir():
            return 0
        return sum(entry.stat().st_size for entry in self.folder.iterdir() if entry.is_file() and entry.suffix == ".json")

    def save(self, payload: bytes, model: str) -> SavedSession:
        """Write ``payload`` (already-validated JSON bytes). Blocking: call from a thread."""
        if len(payload) > self.max_bytes:
            raise PayloadTooLarge(f"session of {len(payload)} bytes is over the {self.max_bytes}-byte limit")
        with self._lock:
            return self._save_locked(payload, model)

    def _save_locked(self, payload: bytes, model: str) -> SavedSession:
        if self.used_bytes() + len(payload) > self.quota_bytes:
            raise PayloadTooLarge(f"the session store is full (quota {self.quota_bytes / (1024 * 1024):.3g} MB); delete old sessions")
        now = datetime.now(timezone.utc)
        safe_model = _SAFE.sub("_", model)[:48].strip("._") or "session"
        name = f"{now.strftime('%Y-%m-%dT%H%M%SZ')}_{safe_model}_{secrets.token_hex(3)}.json"
        self.folder.mkdir(parents=True, exist_ok=True)
        descriptor, temp_name = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, self.folder / name)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        return SavedSession(
            file_name=name,
            display_path=f"{self.display_root}/{name}",
            bytes=len(payload),
            model=model,
            created=now.isoformat().replace("+00:00", "Z"),
        )


def session_model_name(session: object) -> str:
    if not isinstance(session, dict):
        raise InvalidInput("a session must be a JSON object")
    model = session.get("model", "session")
    return model if isinstance(model, str) else "session"
