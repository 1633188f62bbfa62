"""Comparing presented credentials with configured secrets, in constant time."""

from __future__ import annotations

import hmac
from typing import Sequence


def matching_key(secrets: Sequence[bytes], *given: bytes | None) -> int | None:
    """The index of the secret one of ``given`` equals, compared in constant time."""
    found: int | None = None
    for candidate in given:
        if candidate is None:
            continue
        for index, secret in enumerate(secrets):  # no early exit: time does not depend on which key matched
            if hmac.compare_digest(candidate, secret) and found is None:
                found = index
    return found
