"""The KV of prompt prefixes (system turn and voice turns), kept after their first prefill and
copied into a slot instead of computed again: with a known voice only the text is prefilled.

Keyed by content: a hash of the prefix's tokens and of its audio frames (the voice codes), so
another voice, scene or prompt format can never meet a stale entry; one cache belongs to one
decoder, hence to one loaded model. Bounded in bytes, least recently used out first."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch

MIN_PREFIX_TOKENS = 16  # shorter prefixes cost more to look up than to compute


def prefix_key(input_ids: torch.Tensor, audio_frames: torch.Tensor, length: int, frames: int) -> str:
    digest = hashlib.sha256()
    digest.update(input_ids[0, :length].to("cpu", torch.int64).numpy().tobytes())
    digest.update(b"|")
    digest.update(audio_frames[:frames].to("cpu", torch.int64).numpy().tobytes())
    return digest.hexdigest()


@dataclass
class PrefixStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    bytes: int = 0
    entries: int = 0


class PrefixCache:
    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self.stats = PrefixStats()
        self._entries: OrderedDict[str, list[torch.Tensor]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> list[torch.Tensor] | None:
        """Per layer [2, kv_heads, length, head_dim] (keys then values), or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.stats.misses += 1
                return None
            self._entries.move_to_end(key)
            self.stats.hits += 1
            return entry

    def put(self, key: str, layers: list[torch.Tensor]) -> bool:
        size = sum(t.numel() * t.element_size() for t in layers)
        if size > self.budget:
            return False
        with self._lock:
            if key in self._entries:
                return True
            while self._entries and self.stats.bytes + size > self.budget:
                _, evicted = self._entries.popitem(last=False)
                self.stats.bytes -= sum(t.numel() * t.element_size() for t in evicted)
                self.stats.evictions += 1
            self._entries[key] = layers
            self.stats.bytes += size
            self.stats.entries = len(self._entries)
            return True
