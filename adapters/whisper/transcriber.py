"""The Transcriber port on transformers' Whisper (`WhisperForConditionalGeneration` and its
processor, through the ASR pipeline): bf16 on a GPU, float32 on the CPU, word timings from the
cross-attention alignment. Calls that overlap from many requests' threads are batched: the
first call waits up to `max_wait` seconds for others, then all run as one batch."""

from __future__ import annotations

import logging
import queue
import threading
import time
from array import array
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from core.domain.audio import Samples
from core.domain.errors import DomainError, ErrorCode, ErrorType
from core.domain.verification import Word
from core.ports.transcriber import Transcript

log = logging.getLogger(__name__)

WHISPER_RATE = 16_000
WINDOW_SECONDS = 30  # Whisper hears 30 s at a time: longer audio goes in windows
# tokens a second of speech can need (fast speech is about 4): a model that babbles stops here
TOKENS_PER_SECOND = 10
MAX_TOKENS = 440  # Whisper's decoder holds 448 positions, the prompt's included
CALL_TIMEOUT = 600.0  # seconds one transcription may take, queue included


@dataclass
class _Call:
    audio: np.ndarray  # float32 at 16 kHz
    words: bool
    done: Future = field(default_factory=Future)


class WhisperTranscriber:
    def __init__(self, model: Path, name: str | None = None, device: str | None = None, dtype: str = "auto",
                 batch_size: int = 8, max_wait: float = 0.01, language: str | None = None) -> None:
        self.model, self.name = model, name or model.name
        self.device, self.dtype = device, dtype
        self.batch_size, self.max_wait, self.language = max(1, batch_size), max_wait, language
        self.batches = 0  # batches run so far (for tests and the benchmark)
        self._pipe: Any = None
        self._lock = threading.Lock()
        self._calls: queue.Queue[_Call] = queue.Queue()
        self._worker: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def warm_up(self) -> None:
        with self._lock:
            if self._pipe is not None:
                return
            self._pipe = self._load()
            self._worker = threading.Thread(target=self._serve, name="whisper", daemon=True)
            self._worker.start()
        self.transcribe(array("f", bytes(4 * WHISPER_RATE // 2)), WHISPER_RATE, words=True)

    def is_ready(self) -> bool:
        return self._pipe is not None

    def describe(self) -> Mapping[str, Any]:
        pipe = self._pipe
        if pipe is None:
            return {"asr_model": self.name, "loaded": False}
        return {"asr_model": self.name, "asr_device": str(pipe.model.device),
                "asr_dtype": str(pipe.model.dtype).removeprefix("torch.")}

    def _load(self) -> Any:
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor, pipeline

        if not (self.model / "config.json").is_file():
            log.error("no ASR model at %s (HIGGS_ASR_MODEL=%s): fetch it with `higgs-tts download --asr`",
                      self.model, self.name)
            raise DomainError(ErrorType.MODEL, ErrorCode.MODEL_NOT_FOUND,
                              f"the ASR model {self.name} is not on the volume or in a hub cache; the worker's log "
                              "says where it looked", {"asr_model": self.name})
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.float32 if self.dtype == "auto" and device == "cpu" else (
            torch.bfloat16 if self.dtype == "auto" else getattr(torch, self.dtype))
        started = time.perf_counter()
        try:
            model = WhisperForConditionalGeneration.from_pretrained(self.model, dtype=dtype).to(device).eval()
            processor = WhisperProcessor.from_pretrained(self.model)
        except (OSError, ValueError) as exc:
            log.error("could not load the ASR model from %s: %s", self.model, exc)
            raise DomainError(ErrorType.MODEL, ErrorCode.MODEL_LOAD_FAILED,
                              f"the ASR model {self.name} could not be loaded; the worker's log has the details") \
                from exc
        log.info("loaded the ASR model %s on %s (%s) in %.1fs", self.name, device, dtype,
                 time.perf_counter() - started)
        return pipeline("automatic-speech-recognition", model=model, tokenizer=processor.tokenizer,
                        feature_extractor=processor.feature_extractor, device=model.device)

    def close(self) -> None:
        self._calls.put(None)  # type: ignore[arg-type]

    # -- transcribing -----------------------------------------------------------------------

    def transcribe(self, samples: Samples, sample_rate: int, words: bool = False) -> Transcript:
        if self._pipe is None:
            self.warm_up()
        audio = np.frombuffer(samples, dtype=np.float32) if len(samples) else np.zeros(0, dtype=np.float32)
        if sample_rate != WHISPER_RATE:
            import soxr

            audio = soxr.resample(audio, sample_rate, WHISPER_RATE).astype(np.float32, copy=False)
        if len(audio) < WHISPER_RATE // 10:  # under 0.1 s: nothing Whisper could hear
            return Transcript("", ())
        call = _Call(audio, words)
        self._calls.put(call)
        return call.done.result(timeout=CALL_TIMEOUT)  # never a request stuck on a worker that is gone

    def _serve(self) -> None:
        while True:
            first = self._calls.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.batch_size and (left := deadline - time.monotonic()) > 0:
                try:
                    more = self._calls.get(timeout=left)
                except queue.Empty:
                    break
                if more is None:
                    self._calls.put(None)  # type: ignore[arg-type]
                    break
                batch.append(more)
            for words in (False, True):  # the two kinds run as separate batches
                group = [c for c in batch if c.words is words]
                if group:
                    self._run(group, words)

    def _run(self, group: list[_Call], words: bool) -> None:
        try:
            seconds = min(WINDOW_SECONDS, max(len(c.audio) for c in group) / WHISPER_RATE)
            kwargs: dict[str, Any] = {"task": "transcribe",
                                      "max_new_tokens": min(MAX_TOKENS, int(seconds * TOKENS_PER_SECOND) + 16)}
            if self.language:
                kwargs["language"] = self.language
            long = any(len(c.audio) > WINDOW_SECONDS * WHISPER_RATE for c in group)
            outputs = self._pipe([{"raw": c.audio, "sampling_rate": WHISPER_RATE} for c in group],
                                 batch_size=len(group), return_timestamps="word" if words else False,
                                 generate_kwargs=kwargs, **({"chunk_length_s": WINDOW_SECONDS} if long else {}))
            self.batches += 1
            heard = [_transcript(out, len(c.audio) / WHISPER_RATE) for c, out in zip(group, outputs, strict=True)]
        except Exception as exc:  # every call of the batch hears of it; the worker goes on
            for c in group:
                c.done.set_exception(exc)
            return
        for c, transcript in zip(group, heard):
            c.done.set_result(transcript)


def _transcript(out: Mapping[str, Any], seconds: float) -> Transcript:
    words = []
    for piece in out.get("chunks") or ():
        start, end = piece.get("timestamp") or (None, None)
        start = 0.0 if start is None else float(start)
        end = seconds if end is None else float(end)
        text = str(piece.get("text", "")).strip()
        if text:
            words.append(Word(text, round(min(start, seconds), 3), round(min(max(end, start), seconds), 3)))
    return Transcript(str(out.get("text", "")).strip(), tuple(words))
