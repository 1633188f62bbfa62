"""Capacity planning: can a model of a given size go on a device, and who must leave.

Pure functions over the Registry's entries, so the rules are in one place and can be
read (and tested) without any loading machinery. Limits are checked per device
(``max_models``, ``max_memory``) and server-wide (``capacity.max_models``,
``capacity.max_memory_gb``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Sequence

from .devices import Device
from .entry import ModelEntry
from .eviction import EvictionPolicy


class Verdict(enum.Enum):
    FITS = "fits"  # fits now, perhaps after evicting `victims`
    WAIT = "wait"  # would fit once busy (leased or loading) models become evictable
    NEVER = "never"  # cannot fit even with every unpinned model gone


@dataclass
class Plan:
    verdict: Verdict
    victims: list[ModelEntry] = field(default_factory=list)
    reason: str = ""


@dataclass(frozen=True)
class Limits:
    max_models: int
    max_memory_bytes: int


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def plan_room(
    entry: ModelEntry,
    need_bytes: int,
    device: Device,
    resident: Sequence[ModelEntry],
    limits: Limits,
    policy: EvictionPolicy,
) -> Plan:
    """Decide whether ``entry`` (needing ``need_bytes``) fits on ``device``.

    ``resident`` holds every other model that holds memory (loading, ready or
    unloading). Victims are taken in policy order, first to satisfy the device's
    limits, then the server's.
    """
    on_device = [e for e in resident if e.device is device]
    pinned_all = [e for e in resident if e.pinned]
    pinned_dev = [e for e in on_device if e.pinned]

    def never(reason: str) -> Plan:
        return Plan(Verdict.NEVER, reason=f"model '{entry.name}' needs {_mb(need_bytes)}; {reason}")

    if device.max_memory_bytes is not None and need_bytes + sum(e.memory_bytes for e in pinned_dev) > device.max_memory_bytes:
        return never(f"device {device.id} allows {_mb(device.max_memory_bytes)} and pinned models hold {_mb(sum(e.memory_bytes for e in pinned_dev))}")
    if need_bytes + sum(e.memory_bytes for e in pinned_all) > limits.max_memory_bytes:
        return never(f"the server allows {_mb(limits.max_memory_bytes)} and pinned models hold {_mb(sum(e.memory_bytes for e in pinned_all))}")
    if device.max_models is not None and len(pinned_dev) + 1 > device.max_models:
        return never(f"device {device.id} allows {device.max_models} models and {len(pinned_dev)} are pinned there")
    if len(pinned_all) + 1 > limits.max_models:
        return never(f"the server allows {limits.max_models} models and {len(pinned_all)} are pinned")

    victims: list[ModelEntry] = []
    candidates = policy.order([e for e in resident if e.evictable])

    def device_over() -> bool:
        kept = [e for e in on_device if e not in victims]
        if device.max_models is not None and len(kept) + 1 > device.max_models:
            return True
        return device.max_memory_bytes is not None and sum(e.memory_bytes for e in kept) + need_bytes > device.max_memory_bytes

    def server_over() -> bool:
        kept = [e for e in resident if e not in victims]
        return len(kept) + 1 > limits.max_models or sum(e.memory_bytes for e in kept) + need_bytes > limits.max_memory_bytes

    for candidate in candidates:
        if not device_over():
            break
        if candidate.device is device:
            victims.append(candidate)
    for candidate in candidates:
        if not server_over():
            break
        if candidate not in victims:
            victims.append(candidate)
    if device_over() or server_over():
        return Plan(Verdict.WAIT, reason=f"model '{entry.name}' must wait: the resident models it would replace are busy")
    return Plan(Verdict.FITS, victims=victims)
