"""Settings from the environment, read once at start."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping

from boson_multimodal.limits import MAX_BATCH, MAX_CACHE_LEN, PREFIX_CACHE_MB
from core.service.admission import MAX_QUEUE

DEFAULT_MODEL_PATH = "/runpod-volume/higgs_audio"
HUB_SCHEME = "hf://"


def _text(name: str, value: str) -> str:
    return value.strip()


def _flag(name: str, value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _digits(value: str) -> bool:
    value = value.strip()
    return value.isascii() and value.isdigit()


def _non_negative(name: str, value: str) -> int:
    if not _digits(value):
        raise ValueError(f"{name} must be a whole number, not {value!r}")
    return int(value)


def queue_length(value: str) -> int:
    """`serve --max-queue`: HIGGS_MAX_QUEUE's rule, said the way argparse says a bad value."""
    import argparse

    try:
        return _non_negative("--max-queue", value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive(name: str, value: str) -> int:
    if not _digits(value) or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return int(value)


def _port(name: str, value: str) -> int:
    if not _digits(value) or not 0 <= int(value) <= 65535:
        raise ValueError(f"{name} must be a port number, not {value!r}")
    return int(value)


def _number(name: str, value: str) -> float:
    try:
        number = float(value) if value.strip().isascii() else math.nan
    except ValueError:
        number = math.nan
    if not 0 <= number < math.inf:
        raise ValueError(f"{name} must be a number of at least 0, not {value!r}")
    return number


def _fraction(name: str, value: str) -> float:
    number = _number(name, value)
    if not 0 < number <= 1:
        raise ValueError(f"{name} must be a number in (0, 1], not {value!r}")
    return number


def _unit(name: str, value: str) -> float:
    number = _number(name, value)
    if not number <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], not {value!r}")
    return number


def _attempts(name: str, value: str) -> int:
    from core.domain.verification import MAX_VERIFY_ATTEMPTS

    number = _positive(name, value)
    if number > MAX_VERIFY_ATTEMPTS:
        raise ValueError(f"{name} must be at most {MAX_VERIFY_ATTEMPTS}, not {value!r}")
    return number


def _names(name: str, value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _one_of(*allowed: str) -> Callable[[str, str], str]:
    def parse(name: str, value: str) -> str:
        value = value.strip().lower()
        if value not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
        return value
    return parse


def setting(default: Any, *names: str, parse: Callable[[str, str], Any] = _text, empty_is_value: bool = False) -> Any:
    """A setting: its default, stated here once, and the variables it is read from (the first
    one set wins; an empty variable counts as unset unless `empty_is_value`)."""
    return field(default=default, metadata={"env": names, "parse": parse, "empty": empty_is_value})


@dataclass(frozen=True)
class Settings:
    # -- the model (MODEL_PATH=hf://ORG/NAME[@REVISION]: from a hub cache, e.g. RunPod cached
    # models; the audio tokenizer repo beside it)
    # MODEL_PATH sets model_path, or hub_repo and hub_revision (see _model_path)
    model_path: Path = setting(Path(DEFAULT_MODEL_PATH), "MODEL_PATH", parse=lambda n, v: _model_path(v))
    hub_repo: str | None = None  # from MODEL_PATH
    hub_revision: str | None = None  # from MODEL_PATH
    tokenizer_repo: str = setting("bosonai/higgs-audio-v2-tokenizer", "HIGGS_TOKENIZER_REPO")
    tokenizer_revision: str | None = setting(None, "HIGGS_TOKENIZER_REVISION")
    demo_fallback: bool = setting(False, "HIGGS_DEMO_FALLBACK", parse=_flag)  # no weights: use the demo bundle
    demo_model_dir: Path = setting(Path(".cache/demo-model"), "HIGGS_DEMO_MODEL_DIR", parse=lambda n, v: Path(v))
    generation_subdir: str | None = setting(None, "HIGGS_GENERATION_SUBDIR")
    tokenizer_subdir: str | None = setting(None, "HIGGS_TOKENIZER_SUBDIR")
    voices_subdir: str | None = setting(None, "HIGGS_VOICES_SUBDIR")
    # -- the engine
    engine: str = setting("higgs", "HIGGS_ENGINE", parse=_one_of("higgs", "fake"))
    device: str | None = setting(None, "HIGGS_DEVICE")  # cuda | cpu; default: cuda when available
    dtype: str = setting("auto", "HIGGS_DTYPE", parse=_one_of("auto", "bfloat16", "float16", "float32"))
    cuda_graphs: str = setting("auto", "HIGGS_CUDA_GRAPHS", parse=_one_of("auto", "on", "off"))
    gpu_memory_fraction: float = setting(0.9, "HIGGS_GPU_MEMORY_FRACTION", parse=lambda n, v: _fraction(n, v))
    cpu_threads: int | None = setting(None, "HIGGS_CPU_THREADS", parse=_positive)  # None: usable cores less one
    max_cache_len: int = setting(MAX_CACHE_LEN, "HIGGS_MAX_CACHE_LEN", parse=_positive)  # KV positions per slot
    max_batch: int = setting(MAX_BATCH, "HIGGS_MAX_BATCH", parse=_positive)  # requests that decode together
    max_queue: int = setting(MAX_QUEUE, "HIGGS_MAX_QUEUE", parse=_non_negative)  # more wait; the next: QUEUE_FULL
    prefix_cache_mb: int = setting(PREFIX_CACHE_MB, "HIGGS_PREFIX_CACHE_MB", parse=_non_negative)  # 0: off
    warm_voices: tuple[str, ...] = setting((), "HIGGS_WARM_VOICES", parse=_names)  # prefixes cached at start
    # -- the ASR pass (verification, word timings): a Whisper directory, or a repo id found under
    # MODEL_PATH/<repo> or in a hub cache (`higgs-tts download --asr`); unset: no ASR
    asr_model: str | None = setting(None, "HIGGS_ASR_MODEL")
    asr_batch: int = setting(8, "HIGGS_ASR_BATCH", parse=_positive)  # chunks transcribed together
    asr_language: str | None = setting(None, "HIGGS_ASR_LANGUAGE")  # e.g. en; unset: Whisper detects it
    verify: str = setting("off", "HIGGS_VERIFY", parse=_one_of("off", "on", "report"))  # for requests that leave it
    max_wer: float = setting(0.25, "HIGGS_MAX_WER", parse=lambda n, v: _unit(n, v))  # above it, a chunk is redone
    verify_attempts: int = setting(2, "HIGGS_VERIFY_ATTEMPTS", parse=lambda n, v: _attempts(n, v))  # per chunk
    # -- storage (S3, or files under OUTPUT_DIR)
    store: str = setting("auto", "HIGGS_STORE", parse=_one_of("auto", "s3", "local", "none"))
    output_dir: Path = setting(Path("out"), "OUTPUT_DIR", parse=lambda n, v: Path(v))
    s3_bucket: str | None = setting(None, "S3_BUCKET")  # the default bucket when a request names none
    s3_key_prefix: str = setting("higgs-tts", "S3_KEY_PREFIX", empty_is_value=True)
    s3_endpoint_url: str | None = setting(None, "S3_ENDPOINT_URL", "BUCKET_ENDPOINT_URL")
    aws_region: str | None = setting(None, "AWS_DEFAULT_REGION", "AWS_REGION")
    s3_path_style: bool = setting(False, "S3_ADDRESSING_STYLE", parse=lambda n, v: v.strip().lower() == "path")
    # None: the S3 adapter's own default (S3Config)
    s3_multipart_threshold_mb: int | None = setting(None, "S3_MULTIPART_THRESHOLD_MB", parse=_positive)
    s3_presign_expiry: int | None = setting(None, "S3_PRESIGN_EXPIRY", parse=_positive)  # seconds, at most 7 days
    s3_max_attempts: int | None = setting(None, "S3_MAX_ATTEMPTS", parse=_positive)
    # RunPod's rp_upload names; None: the standard AWS credential chain
    bucket_access_key_id: str | None = setting(None, "BUCKET_ACCESS_KEY_ID")
    bucket_secret_access_key: str | None = setting(None, "BUCKET_SECRET_ACCESS_KEY")
    result_cache: bool = setting(False, "HIGGS_RESULT_CACHE", parse=_flag)  # seeded repeats from stored audio
    voices_s3_uri: str | None = setting(None, "HIGGS_VOICES_S3_URI")  # s3://bucket/prefix: a shared voice library
    # -- telemetry
    log_level: str = setting("INFO", "LOG_LEVEL", parse=lambda n, v: v.strip().upper())
    otel_exporter: str = setting("none", "OTEL_TRACES_EXPORTER", parse=lambda n, v: v.strip().lower())
    otel_service_name: str = setting("higgs-tts", "OTEL_SERVICE_NAME")
    # -- the servers: HTTP (and health), gRPC clients' keys, the RunPod worker
    api_keys: tuple[str, ...] = setting((), "HIGGS_API_KEYS", parse=lambda n, v: read_api_keys(v))
    cors_origins: tuple[str, ...] = setting((), "HIGGS_CORS_ORIGINS", parse=lambda n, v: _origins(n, v))  # none
    drain_seconds: float = setting(30.0, "HIGGS_DRAIN_SECONDS", parse=_number)  # after SIGTERM, for requests in flight
    http_port: int | None = setting(None, "PORT", parse=_port)  # RunPod load-balancing endpoints set it
    grpc_port: int | None = setting(None, "GRPC_PORT", parse=_port)  # serve http: gRPC beside it, one engine
    health_port: int | None = setting(None, "HEALTH_PORT", parse=_port)  # /health, /ready, /metrics, /ping
    ping_port: int | None = setting(None, "PORT_HEALTH", parse=_port)  # RunPod load balancers probe /ping here
    health_host: str = setting("0.0.0.0", "HEALTH_HOST")
    runpod_stream: bool = setting(False, "RUNPOD_STREAM", parse=_flag)  # generator handler: chunks as made
    # None: the RunPod adapter's own default (WorkerOptions)
    inline_audio_max_mb: float | None = setting(None, "RUNPOD_INLINE_AUDIO_MAX_MB", parse=_number)
    progress_interval: float | None = setting(None, "RUNPOD_PROGRESS_INTERVAL", parse=_number)  # seconds

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            for name in f.metadata.get("env", ()):
                raw = environ.get(name)
                if raw is not None and (raw.strip() or f.metadata["empty"]):
                    values[f.name] = f.metadata["parse"](name, raw)
                    break
        model = values.pop("model_path", None)
        if values.get("verify", "off") != "off" and not values.get("asr_model"):
            raise ValueError(f"HIGGS_VERIFY={values['verify']} needs an ASR model: set HIGGS_ASR_MODEL")
        return cls(**values, **(model or {}))

    def __repr__(self) -> str:  # never print a secret
        hidden = {"bucket_secret_access_key", "api_keys"}
        fields_ = ", ".join(f"{k}={'***' if k in hidden and v else v!r}" for k, v in self.__dict__.items())
        return f"Settings({fields_})"

    @property
    def uses_s3(self) -> bool:
        if self.store == "s3":
            return True
        if self.store != "auto":
            return False
        return self.s3_endpoint_url is not None or self.s3_bucket is not None

    @property
    def store_kind(self) -> str:
        if self.store == "auto":
            return "s3" if self.uses_s3 else "local"
        return self.store


def _model_path(value: str) -> dict[str, Any]:
    """MODEL_PATH: a directory, or hf://ORG/NAME[@REVISION] (a hub repo and revision; voice
    prompts then stay on the volume at the default path)."""
    value = value.strip()
    if not value.startswith(HUB_SCHEME):
        return {"model_path": Path(value)}
    repo, _, revision = value[len(HUB_SCHEME):].partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ValueError(f"MODEL_PATH {value!r}: a hub model is hf://ORG/NAME[@REVISION]")
    return {"hub_repo": repo, "hub_revision": revision or None, "model_path": Path(DEFAULT_MODEL_PATH)}


def _origins(name: str, value: str) -> tuple[str, ...]:
    """`*`, or origins (`scheme://host[:port]`, comma-separated) whose pages may call the API."""
    origins = _names(name, value)
    for origin in origins:
        if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
            raise ValueError(f"{name}: {origin!r} is not an origin (scheme://host[:port], no path) or *")
    return origins


def given(**values: Any) -> dict[str, Any]:
    """The optional settings that were set, for an adapter's options: the others keep the
    adapter's own default."""
    return {k: v for k, v in values.items() if v is not None}


def read_api_keys(value: str | None) -> tuple[str, ...]:
    """Keys from `a,b,c`, or from a file (one key per line, # comments) when the value is the
    path of one."""
    value = (value or "").strip()
    if not value:
        return ()
    path = Path(value)
    if "," not in value and path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
        keys = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    else:
        keys = [key.strip() for key in value.split(",") if key.strip()]
    if not keys:
        raise ValueError("HIGGS_API_KEYS is set but holds no key")
    return tuple(keys)


def usable_cpus() -> int:
    """Cores this process may run on: its affinity, and the cgroup's CPU quota (containers)."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            count = min(count, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)


def limit_cpu_threads(settings: Settings, env: dict | None = None) -> int:
    """Size torch's intra-op (OpenMP) pool before torch is imported: the usable cores less one,
    which stays free for the server's own threads (gRPC and HTTP I/O, audio encoding). With
    as many OpenMP threads as cores, every parallel region waits at its barrier for a thread
    that a busy neighbour descheduled: under CPU contention a gRPC request took 21 s instead
    of 0.4 s (bench/paths.py --hog). OMP_NUM_THREADS set by the operator wins."""
    env = os.environ if env is None else env
    threads = settings.cpu_threads or max(1, usable_cpus() - 1)
    env.setdefault("OMP_NUM_THREADS", str(threads))
    env.setdefault("MKL_NUM_THREADS", env["OMP_NUM_THREADS"])
    return int(env["OMP_NUM_THREADS"])
