"""Answers for repeated requests: a request whose output is fully determined (the same text,
voices, scene, sampling parameters with an explicit seed, chunking, and the same model) is
served from the stored audio of the first one. Entries live in the object store under
`<prefix>/result-cache/<sha256>.f32` (the float32 samples as generated, so every format encodes
exactly as the first time) with a JSON record naming the request that made them; the
key hashes the clips' content, not their names, and the model's description (revision, dtype,
device), so a changed voice or model never meets an old entry."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

from core.domain.audio import Samples, samples_from_bytes, samples_to_bytes
from core.domain.errors import DomainError
from core.domain.request import SpeechRequest
from core.domain.voice import VoicePrompt
from core.ports.object_store import ObjectStore
from core.ports.speech_engine import ModelInfo
from core.ports.tracer import Tracer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedResult:
    samples: Samples  # float32 mono
    sample_rate: int
    request_id: str  # the request that generated it
    frames: int
    stop_reason: str


class ResultCache:
    def __init__(self, store: ObjectStore, bucket: str, prefix: str) -> None:
        self.store, self.bucket, self.prefix = store, bucket, prefix.strip("/")

    @staticmethod
    def eligible(request: SpeechRequest) -> bool:
        """Only requests that say what they want exactly: a seed, no output of their own choosing
        that would be overwritten; never a speaking session (its text is not known up front), nor
        one whose audio goes through the ASR pass (a replay would have no transcript)."""
        return request.sampling.seed is not None and request.feed is None and not request.needs_asr

    def key(self, request: SpeechRequest, voices: Sequence[VoicePrompt], model: ModelInfo) -> str:
        identity = {
            "text": request.text,
            "scene": request.scene_prompt,
            "speed": request.speed,
            "voices": [[v.content_hash, v.transcript] for v in voices],
            "sampling": asdict(request.sampling),
            "chunking": [request.chunking.method.value, request.chunking.max_word_num, request.chunking.max_num_turns],
            "model": model.identity(),
        }
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()
        return f"{self.prefix}/result-cache/{digest}" if self.prefix else f"result-cache/{digest}"

    def lookup(self, request: SpeechRequest, voices: Sequence[VoicePrompt], describe: Callable[[], ModelInfo],
               tracer: Tracer) -> tuple[str | None, CachedResult | None]:
        """The request's key (None when the request does not qualify, or the model is not loaded
        yet: its description lacks the revision) and the entry found under it. The model is
        described only for a request that qualifies."""
        if not self.eligible(request):
            return None, None
        model = describe()
        if not model.loaded:
            return None, None
        key = self.key(request, voices, model)
        with tracer.span("speech.result_cache.lookup") as span:
            hit = self.load(key)
            span.set_attribute("speech.result_cache", "hit" if hit else "miss")
        return key, hit

    def load(self, key: str) -> CachedResult | None:
        try:
            if not self.store.exists(self.bucket, key + ".json"):
                return None
            record = json.loads(self.store.get(self.bucket, key + ".json"))
            data = self.store.get(self.bucket, key + ".f32")
            if len(data) % 4 or len(data) != 4 * int(record["samples"]):
                raise ValueError("truncated samples")
            samples, rate = samples_from_bytes(data), int(record["sample_rate"])
        except (DomainError, ValueError, KeyError, TypeError):
            log.warning("result cache entry %s could not be read; generating instead", key, exc_info=True)
            return None
        return CachedResult(samples, rate, str(record["request_id"]), int(record["frames"]), str(record["stop_reason"]))

    def save(self, key: str, samples: Samples, sample_rate: int, request_id: str, frames: int,
             stop_reason: str) -> None:
        """The audio, then its record (an entry exists once the record does). A concurrent
        writer of the same entry wins; a failure only costs the next request a generation."""
        record = {"request_id": request_id, "frames": frames, "stop_reason": stop_reason,
                  "sample_rate": sample_rate, "samples": len(samples)}
        try:
            self.store.put(self.bucket, key + ".f32", samples_to_bytes(samples), "application/octet-stream")
            self.store.put(self.bucket, key + ".json", json.dumps(record).encode(), "application/json")
        except DomainError as error:
            log.info("result cache entry %s not written: %s", key, error.code)
