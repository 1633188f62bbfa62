"""Eviction policies: given the models that may be evicted, which go first.

A policy only orders candidates; the Registry decides who is a candidate (ready,
unleased, unpinned) and how many must go. New policies subclass :class:`EvictionPolicy`
and are added to :data:`POLICIES`.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from .entry import ModelEntry


class EvictionPolicy(abc.ABC):
    name: str

    @abc.abstractmethod
    def order(self, candidates: Sequence["ModelEntry"]) -> list["ModelEntry"]:
        """Candidates sorted so that the first is evicted first."""


class LeastRecentlyUsed(EvictionPolicy):
    name = "lru"

    def order(self, candidates: Sequence["ModelEntry"]) -> list["ModelEntry"]:
        return sorted(candidates, key=lambda e: e.stats.last_used_mono)


class LeastFrequentlyUsed(EvictionPolicy):
    """Fewest uses since load first; ties go to the least recently used."""

    name = "lfu"

    def order(self, candidates: Sequence["ModelEntry"]) -> list["ModelEntry"]:
        return sorted(candidates, key=lambda e: (e.stats.uses_since_load, e.stats.last_used_mono))


POLICIES: dict[str, EvictionPolicy] = {p.name: p for p in (LeastRecentlyUsed(), LeastFrequentlyUsed())}
