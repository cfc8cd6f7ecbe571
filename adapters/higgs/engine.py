"""The SpeechEngine port on the Higgs Audio runtime (boson_multimodal)."""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from array import array
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from boson_multimodal.batch import DecoderClosed
from boson_multimodal.codec import AudioInputError
from boson_multimodal.graphs import GraphCaptureError
from boson_multimodal.layout import ModelPaths
from boson_multimodal.limits import MAX_BATCH, MAX_CACHE_LEN, PREFIX_CACHE_MB
from boson_multimodal.loader import ModelLoadError
from boson_multimodal.memory import DEFAULT_FRACTION, NotEnoughMemory
from boson_multimodal.planning import StepBudgetTooSmall, TextDoesNotFit
from boson_multimodal.runtime import (
    AudioOut,
    Finished,
    HiggsAudio,
    ProgressOut,
    SpeechJob,
    VoiceClip,
    max_audio_frames,
)
from boson_multimodal.sampling import NumericalError, SamplingConfig
from core.domain.audio import Samples
from core.domain.errors import DomainError, ErrorCode, ErrorType
from core.domain.request import Synthesis
from core.domain.voice import VoicePrompt
from core.ports.speech_engine import (
    ChunkCheck,
    EngineAudio,
    EngineDone,
    EngineEvent,
    EngineLoad,
    EngineProgress,
    EngineTimings,
    EngineWork,
    ModelInfo,
)

log = logging.getLogger(__name__)


class HiggsSpeechEngine:
    """Loads lazily on the first request, or at `warm_up()`. Up to `max_batch` requests decode
    together (the runtime's batch decoder); a failed request leaves the engine usable."""

    sample_rate = 24_000

    def __init__(
        self,
        paths: ModelPaths,
        device: str | None = None,
        max_cache_len: int = MAX_CACHE_LEN,
        max_batch: int = MAX_BATCH,
        prefix_cache_mb: int = PREFIX_CACHE_MB,
        warm_voices: Callable[[], Sequence[VoicePrompt]] = lambda: (),
        max_reference_seconds: float = 30.0,
        loader: Callable[..., HiggsAudio] = HiggsAudio.load,
        dtype: str = "auto",
        cuda_graphs: str = "auto",
        gpu_memory_fraction: float = DEFAULT_FRACTION,
    ) -> None:
        self.paths = paths
        self.device = device
        self.dtype, self.cuda_graphs, self.gpu_memory_fraction = dtype, cuda_graphs, gpu_memory_fraction
        self.max_cache_len = max_cache_len
        self.max_batch = max_batch
        self.prefix_cache_mb = prefix_cache_mb
        self._warm_voices = warm_voices
        self.max_reference_seconds = max_reference_seconds
        self._loader = loader
        self._runtime: HiggsAudio | None = None
        self._warm = False
        self._startup: dict[str, float] = {}
        self._lock = threading.Lock()
        self._warming = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------

    def _load(self) -> tuple[HiggsAudio, float]:
        with self._lock:
            if self._runtime is not None:
                return self._runtime, 0.0
            started = time.perf_counter()
            if self.paths.is_demo:
                log.warning("MODEL_PATH=%s holds the DEMO bundle: random weights, the audio is noise. "
                            "Put the real Higgs Audio V2 weights on the volume for speech.", self.paths.root)
            try:
                self._runtime = self._loader(self.paths, device=self.device, dtype=_torch_dtype(self.dtype),
                                             max_cache_len=self.max_cache_len, max_batch=self.max_batch,
                                             prefix_cache_bytes=self.prefix_cache_mb * 2**20,
                                             cuda_graphs=self.cuda_graphs,
                                             gpu_memory_fraction=self.gpu_memory_fraction)
            except NotEnoughMemory as exc:
                log.error("%s", exc)
                raise DomainError(ErrorType.MODEL, ErrorCode.MODEL_LOAD_FAILED,
                                  "the model does not fit this GPU with room for one request; the worker's log "
                                  "says what to change") from exc
            except GraphCaptureError as exc:
                log.error("%s", exc)
                raise DomainError(ErrorType.MODEL, ErrorCode.MODEL_LOAD_FAILED,
                                  "a CUDA graph could not be captured (HIGGS_CUDA_GRAPHS=on)") from exc
            except ModelLoadError as exc:  # the log names the paths; callers get no filesystem layout
                log.error("could not load the model from %s: %s", self.paths.root, exc)
                code = ErrorCode.MODEL_NOT_FOUND if exc.missing else ErrorCode.MODEL_LOAD_FAILED
                what = "the model weights are not on the volume" if exc.missing else "the model could not be loaded"
                raise DomainError(
                    ErrorType.MODEL, code, f"{what}; the worker's log has the details",
                    {"missing": [Path(m).name for m in exc.missing]},
                ) from exc
            seconds = time.perf_counter() - started
            self._startup["load_s"] = round(seconds, 3)
            decoder = self._runtime.decoder
            log.info("loaded %s in %.1fs (%s); KV cache %d slots x %d positions = %.0f MiB",
                     self.paths.root, seconds, self._runtime.bundle.info, decoder.max_batch,
                     decoder.max_cache_len, decoder.executor.kv.nbytes / 2**20)
            return self._runtime, seconds

    def warm_up(self) -> None:
        runtime, _ = self._load()
        with self._warming:
            if not self._warm:
                started = time.perf_counter()
                voices = [[VoiceClip(v.name, v.transcript, v.audio, v.content_hash)] for v in self._warm_voices()]
                runtime.warm_up(voices)
                self._startup["warm_up_s"] = round(time.perf_counter() - started, 3)
                if voices:
                    log.info("prefix cache warmed for %s", ", ".join(v[0].name for v in voices))
                self._warm = True

    def is_ready(self) -> bool:
        return self._runtime is not None and self._warm

    def load(self) -> EngineLoad:
        runtime = self._runtime
        if runtime is None:
            return EngineLoad(self.max_batch)
        decoder = runtime.decoder
        occupancy, cache, graphs = decoder.occupancy, decoder.executor.prefix_cache, decoder.executor.graphs
        stats = cache.stats if cache is not None else None
        # the slots the decoder has (on a GPU, what its memory holds, at most max_batch)
        return EngineLoad(decoder.max_batch, occupancy.active, occupancy.waiting,
                          graphs_captured=graphs.captured if decoder.executor.use_cuda_graphs else 0,
                          graphs_fallback=len(graphs.fallbacks),
                          **({} if stats is None else {"prefix_hits": stats.hits, "prefix_misses": stats.misses,
                                                       "prefix_evictions": stats.evictions,
                                                       "prefix_bytes": stats.bytes}))

    def describe(self) -> ModelInfo:
        if self._runtime is None:
            return ModelInfo("higgs", loaded=False)
        info = dict(self._runtime.bundle.info)
        info.pop("model_path", None)  # a worker's filesystem is nobody's business
        decoder = self._runtime.decoder
        named = {k: info.pop(k, None) for k in ("layout", "revision", "device", "dtype")}
        sizing = {"max_batch": decoder.max_batch, "max_cache_len": decoder.max_cache_len,
                  "kv_cache_mib": round(decoder.executor.kv.nbytes / 2**20)}
        return ModelInfo("higgs", True, **named, details=info, sizing=sizing, startup=dict(self._startup))

    def close(self) -> None:
        with self._warming, self._lock:
            if self._runtime is not None:
                self._runtime.close()  # requests still running fail with DecoderClosed
            self._runtime = None
            self._warm = False
            self._startup = {}
            gc.collect()
            _empty_cuda_cache()

    # -- one request ----------------------------------------------------------------------

    def max_frames(self, synthesis: Synthesis) -> int:
        runtime = self._runtime
        if runtime is not None:  # its own plan: the chunks it will generate
            with _domain_errors():
                return runtime.max_frames(_job(synthesis, ()))
        chunking = synthesis.chunking
        return max_audio_frames(synthesis.text, synthesis.sampling.max_new_tokens, chunking.method.value,
                                chunking.max_word_num, chunking.max_num_turns)

    def prepare(self, synthesis: Synthesis, voices: Sequence[VoicePrompt]) -> float:
        runtime, load_seconds = self._load()
        with _domain_errors():
            runtime.plan(_job(synthesis, voices))
        return load_seconds

    def speak(
        self, synthesis: Synthesis, voices: Sequence[VoicePrompt], cancel: threading.Event,
        check: ChunkCheck | None = None,
    ) -> Iterator[EngineEvent]:
        runtime, load_seconds = self._load()
        job = _job(synthesis, voices, None if check is None else _RuntimeCheck(check))
        with _domain_errors():
            for event in runtime.speak(job, cancel):
                if isinstance(event, AudioOut):
                    yield EngineAudio(samples_of(event.samples), event.frame_index)
                elif isinstance(event, ProgressOut):
                    yield EngineProgress(event.frames_done, event.chunks_done, event.chunks_total, event.segment)
                elif isinstance(event, Finished):
                    yield _done(event, load_seconds,
                                synthesis.text if synthesis.feed is None else synthesis.feed.spoken())


def samples_of(wave: np.ndarray) -> Samples:
    """The runtime's waveform as the core's samples, in one copy (numpy's buffer straight into
    the array; through `tobytes` it would be two)."""
    samples: Samples = array("f")
    samples.frombytes(memoryview(np.ascontiguousarray(wave, dtype=np.float32)).cast("B"))
    return samples


class _RuntimeCheck:
    """The port's ChunkCheck for the runtime: its samples are numpy arrays."""

    def __init__(self, check: ChunkCheck) -> None:
        self.check = check
        self.hold, self.attempts, self.max_score = check.hold, check.attempts, check.max_score

    def judge(self, chunk: int, attempt: int, text: str, samples: np.ndarray) -> float | None:
        return self.check.judge(chunk, attempt, text, samples_of(samples))

    def kept(self, chunk: int, attempt: int, start_sample: int) -> None:
        self.check.kept(chunk, attempt, start_sample)


def _job(synthesis: Synthesis, voices: Sequence[VoicePrompt], check: _RuntimeCheck | None = None) -> SpeechJob:
    s = synthesis.sampling
    return SpeechJob(
        text=synthesis.text,
        voices=[VoiceClip(v.name, v.transcript, v.audio, v.content_hash) for v in voices],
        scene=synthesis.scene_prompt,
        sampling=SamplingConfig(s.temperature, s.top_k, s.top_p, s.ras_win_len, s.ras_win_max_num_repeat, s.seed),
        max_new_tokens=s.max_new_tokens,
        chunk_method=synthesis.chunking.method.value,
        chunk_max_word_num=synthesis.chunking.max_word_num,
        chunk_max_num_turns=synthesis.chunking.max_num_turns,
        feed=synthesis.feed,
        check=check,
    )


@contextlib.contextmanager
def _domain_errors() -> Iterator[None]:
    """The runtime's failures as the DomainErrors they are."""
    try:
        yield
    except AudioInputError as exc:
        raise DomainError(ErrorType.VALIDATION, ErrorCode.INVALID_REFERENCE_AUDIO, str(exc),
                          {"field": "ref_audio", "constraint": "audio_clip"}) from exc
    except NumericalError as exc:
        raise DomainError(ErrorType.INFERENCE, ErrorCode.NUMERICAL_ERROR, str(exc)) from exc
    except StepBudgetTooSmall as exc:
        raise DomainError(ErrorType.VALIDATION, ErrorCode.INVALID_MAX_NEW_TOKENS, str(exc),
                          {"field": "max_new_tokens", "constraint": "leaves_audio_frames"}) from exc
    except TextDoesNotFit as exc:
        raise DomainError(ErrorType.VALIDATION, ErrorCode.TEXT_TOO_LONG, str(exc),
                          {"field": "transcript", "constraint": "fits_the_model"}) from exc
    except DecoderClosed as exc:
        raise DomainError(ErrorType.MODEL, ErrorCode.MODEL_NOT_READY,
                          "the engine is shutting down; retry on another worker") from exc
    except RuntimeError as exc:
        if _is_out_of_memory(exc):
            _empty_cuda_cache()
            raise DomainError(ErrorType.INFERENCE, ErrorCode.OUT_OF_MEMORY,
                              "the GPU ran out of memory; try a shorter text or chunking") from exc
        raise


def _done(event: Finished, load_seconds: float, text: str) -> EngineDone:
    t = event.timings
    return EngineDone(
        frames=event.frames,
        stop_reason=event.stop_reason,
        timings=EngineTimings(queue=t["queue"], load=load_seconds, prefill=t["prefill"], decode=t["decode"],
                              vocode=t["vocode"]),
        text_output=text,
        work=EngineWork(prompt_tokens=event.prompt_tokens, prefill_tokens=event.prefill_tokens,
                        decode_steps=event.steps, chunk_stop_reasons=tuple(event.chunk_stop_reasons),
                        chunk_frames=tuple(int(codes.shape[0]) for codes in event.chunk_codes),
                        prefix_cache=tuple(event.prefix_cache)),
    )


def _torch_dtype(name: str):
    """HIGGS_DTYPE: auto (bf16 on CUDA, float32 on the CPU), bfloat16, float16 or float32."""
    import torch

    return None if name == "auto" else getattr(torch, name)


def _is_out_of_memory(exc: BaseException) -> bool:
    return "out of memory" in str(exc).lower() or type(exc).__name__ == "OutOfMemoryError"


def _empty_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
