"""Settings from the environment, read once at start."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

DEFAULT_MODEL_PATH = "/runpod-volume/higgs_audio"
HUB_SCHEME = "hf://"


@dataclass(frozen=True)
class Settings:
    model_path: Path = Path(DEFAULT_MODEL_PATH)
    # MODEL_PATH=hf://ORG/NAME[@REVISION]: the generation model from a hub cache (RunPod cached
    # models, HF_HUB_CACHE, HF_HOME); the audio tokenizer repo beside it
    hub_repo: str | None = None
    hub_revision: str | None = None
    tokenizer_repo: str = "bosonai/higgs-audio-v2-tokenizer"
    tokenizer_revision: str | None = None
    engine: str = "higgs"  # higgs | fake
    output_dir: Path = Path("out")
    store: str = "auto"  # auto | s3 | local | none
    s3_bucket: str | None = None  # default bucket when a request names none
    s3_key_prefix: str = "higgs-tts"
    s3_endpoint_url: str | None = None
    aws_region: str | None = None
    s3_path_style: bool = False
    s3_multipart_threshold_mb: int = 8
    s3_presign_expiry: int = 3600  # seconds, at most 7 days
    s3_max_attempts: int = 5
    # RunPod's rp_upload names; None: the standard AWS credential chain
    bucket_access_key_id: str | None = None
    bucket_secret_access_key: str | None = None
    device: str | None = None  # cuda | cpu; default: cuda when available
    cpu_threads: int | None = None  # torch's intra-op threads; None: the usable cores less one
    max_cache_len: int = 8192  # KV-cache positions per slot: prompt + generated frames of one chunk
    max_batch: int = 8  # requests that decode together (slots of the KV cache)
    prefix_cache_mb: int = 512  # KV of prompt prefixes (system + voice turns) kept for reuse; 0: off
    warm_voices: tuple[str, ...] = ()  # voices whose prefixes are cached at start
    result_cache: bool = False  # HIGGS_RESULT_CACHE=on: seeded repeats answered from stored audio
    demo_fallback: bool = False  # no weights at MODEL_PATH: use (and write) the demo bundle
    demo_model_dir: Path = Path(".cache/demo-model")
    generation_subdir: str | None = None
    tokenizer_subdir: str | None = None
    voices_subdir: str | None = None
    log_level: str = "INFO"
    otel_exporter: str = "none"  # from OTEL_TRACES_EXPORTER: otlp | console | none
    otel_service_name: str = "higgs-tts"
    # RunPod worker
    runpod_stream: bool = False  # generator handler: audio chunks as they are made
    health_port: int | None = None  # /health, /ready, /metrics, /ping
    ping_port: int | None = None  # PORT_HEALTH: RunPod load-balancing endpoints probe /ping here
    health_host: str = "0.0.0.0"
    inline_audio_max_mb: float = 7.0  # audio returned inline (base64) when no store is configured
    progress_interval: float = 2.0  # seconds between progress updates of a RunPod job
    # HTTP API and shared voices
    api_keys: tuple[str, ...] = ()  # HIGGS_API_KEYS: comma-separated, or a file of one key per line
    voices_s3_uri: str | None = None  # HIGGS_VOICES_S3_URI=s3://bucket/prefix: the voice library in S3
    http_port: int | None = None  # PORT: the HTTP server's port (RunPod load-balancing endpoints set it)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        engine = env.get("HIGGS_ENGINE", "higgs").strip().lower()
        if engine not in ("higgs", "fake"):
            raise ValueError(f"HIGGS_ENGINE must be 'higgs' or 'fake', not {engine!r}")
        store = env.get("HIGGS_STORE", "auto").strip().lower()
        if store not in ("auto", "s3", "local", "none"):
            raise ValueError(f"HIGGS_STORE must be auto, s3, local or none, not {store!r}")
        model_path = env.get("MODEL_PATH") or DEFAULT_MODEL_PATH
        hub_repo = hub_revision = None
        if model_path.startswith(HUB_SCHEME):
            hub_repo, _, hub_revision = model_path[len(HUB_SCHEME):].partition("@")
            if hub_repo.count("/") != 1 or not all(hub_repo.split("/")):
                raise ValueError(f"MODEL_PATH {model_path!r}: a hub model is hf://ORG/NAME[@REVISION]")
            model_path = DEFAULT_MODEL_PATH  # voice prompts stay on the volume
        return cls(
            model_path=Path(model_path),
            hub_repo=hub_repo,
            hub_revision=hub_revision or None,
            tokenizer_repo=env.get("HIGGS_TOKENIZER_REPO") or "bosonai/higgs-audio-v2-tokenizer",
            tokenizer_revision=env.get("HIGGS_TOKENIZER_REVISION") or None,
            engine=engine,
            output_dir=Path(env.get("OUTPUT_DIR") or "out"),
            store=store,
            s3_bucket=env.get("S3_BUCKET") or None,
            s3_key_prefix=env.get("S3_KEY_PREFIX", "higgs-tts"),
            s3_endpoint_url=env.get("S3_ENDPOINT_URL") or env.get("BUCKET_ENDPOINT_URL") or None,
            aws_region=env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or None,
            s3_path_style=(env.get("S3_ADDRESSING_STYLE") or "").strip().lower() == "path",
            s3_multipart_threshold_mb=int(env.get("S3_MULTIPART_THRESHOLD_MB") or 8),
            s3_presign_expiry=int(env.get("S3_PRESIGN_EXPIRY") or 3600),
            s3_max_attempts=int(env.get("S3_MAX_ATTEMPTS") or 5),
            bucket_access_key_id=env.get("BUCKET_ACCESS_KEY_ID") or None,
            bucket_secret_access_key=env.get("BUCKET_SECRET_ACCESS_KEY") or None,
            device=env.get("HIGGS_DEVICE") or None,
            cpu_threads=_positive(env, "HIGGS_CPU_THREADS"),
            max_cache_len=_positive(env, "HIGGS_MAX_CACHE_LEN") or 8192,
            max_batch=_positive(env, "HIGGS_MAX_BATCH") or 8,
            prefix_cache_mb=_non_negative(env, "HIGGS_PREFIX_CACHE_MB", 512),
            warm_voices=tuple(v.strip() for v in (env.get("HIGGS_WARM_VOICES") or "").split(",") if v.strip()),
            result_cache=_flag(env.get("HIGGS_RESULT_CACHE")),
            demo_fallback=_flag(env.get("HIGGS_DEMO_FALLBACK")),
            demo_model_dir=Path(env.get("HIGGS_DEMO_MODEL_DIR") or ".cache/demo-model"),
            generation_subdir=env.get("HIGGS_GENERATION_SUBDIR") or None,
            tokenizer_subdir=env.get("HIGGS_TOKENIZER_SUBDIR") or None,
            voices_subdir=env.get("HIGGS_VOICES_SUBDIR") or None,
            log_level=env.get("LOG_LEVEL", "INFO").upper(),
            otel_exporter=(env.get("OTEL_TRACES_EXPORTER") or "none").strip().lower(),
            otel_service_name=env.get("OTEL_SERVICE_NAME") or "higgs-tts",
            runpod_stream=_flag(env.get("RUNPOD_STREAM")),
            health_port=_port(env, "HEALTH_PORT"),
            ping_port=_port(env, "PORT_HEALTH"),
            health_host=env.get("HEALTH_HOST") or "0.0.0.0",
            inline_audio_max_mb=float(env.get("RUNPOD_INLINE_AUDIO_MAX_MB") or 7.0),
            progress_interval=float(env.get("RUNPOD_PROGRESS_INTERVAL") or 2.0),
            api_keys=read_api_keys(env.get("HIGGS_API_KEYS")),
            voices_s3_uri=env.get("HIGGS_VOICES_S3_URI") or None,
            http_port=_port(env, "PORT"),
        )

    def __repr__(self) -> str:  # never print a secret
        hidden = {"bucket_secret_access_key", "api_keys"}
        fields = ", ".join(f"{k}={'***' if k in hidden and v else v!r}" for k, v in self.__dict__.items())
        return f"Settings({fields})"

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


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _non_negative(env: Mapping[str, str], name: str, default: int) -> int:
    value = (env.get(name) or "").strip()
    if not value:
        return default
    if not value.isdigit():
        raise ValueError(f"{name} must be a whole number, not {value!r}")
    return int(value)


def _positive(env: Mapping[str, str], name: str) -> int | None:
    value = (env.get(name) or "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return int(value)


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


def _port(env: Mapping[str, str], name: str) -> int | None:
    value = (env.get(name) or "").strip()
    if not value:
        return None
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        raise ValueError(f"{name} must be a port number, not {value!r}")
    return int(value)
