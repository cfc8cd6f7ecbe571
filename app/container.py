"""The composition root: which adapter backs which port, decided once from Settings.

Tests override providers (`container.engine.override(providers.Object(fake))`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dependency_injector import containers, providers

from adapters.fake import FakeSpeechEngine, InMemoryVoiceLibrary
from adapters.local import LocalObjectStore
from adapters.otel import OtelTracer
from adapters.soundfile import SoundfileEncoder
from adapters.voices import VolumeVoiceLibrary
from app.settings import HUB_SCHEME, Settings, given
from app.telemetry import make_tracer_provider
from boson_multimodal.layout import GENERATION_SUBDIR, ModelPaths, cached_snapshot, from_hub_cache, hub_caches
from core.domain.errors import DomainError
from core.service import AudioArchive, GenerateSpeech, SpeechService

log = logging.getLogger(__name__)


def volume_paths(settings: Settings, root: Path | None = None) -> ModelPaths:
    """The volume layout under `root` (default MODEL_PATH), with the configured sub-paths."""
    return ModelPaths.under(root or settings.model_path, settings.generation_subdir, settings.tokenizer_subdir,
                            settings.voices_subdir)


@dataclass(frozen=True)
class ModelLocation:
    """Where the weights are to be read from, and why: `source` is "hub-repo" (MODEL_PATH=hf://,
    found in a hub cache), "hub-repo-missing" (named but not cached), "volume", "hub-cache" (the
    published repos, the volume having none), "demo" (HIGGS_DEMO_FALLBACK) or "missing"."""

    paths: ModelPaths
    source: str


def locate_model(settings: Settings) -> ModelLocation:
    """The choice, in that order of preference; it looks and never writes."""
    paths = volume_paths(settings)
    if settings.hub_repo:
        cached = from_hub_cache(settings.hub_repo, settings.tokenizer_repo, paths.voices, settings.hub_revision,
                                settings.tokenizer_revision)
        if cached is not None:
            return ModelLocation(cached, "hub-repo")
        first = hub_caches()[0]
        return ModelLocation(ModelPaths(first, first / settings.hub_repo, first / settings.tokenizer_repo,
                                        paths.voices), "hub-repo-missing")
    if paths.has_weights():
        return ModelLocation(paths, "volume")
    cached = from_hub_cache(GENERATION_SUBDIR, settings.tokenizer_repo, paths.voices,
                            tokenizer_revision=settings.tokenizer_revision)
    if cached is not None:
        return ModelLocation(cached, "hub-cache")
    if settings.demo_fallback:
        return ModelLocation(ModelPaths.under(settings.demo_model_dir), "demo")
    return ModelLocation(paths, "missing")


def resolve_model_paths(settings: Settings) -> ModelPaths:
    """`locate_model`'s choice, said in the log; the demo bundle is written when it is the
    choice and is not there yet."""
    where = locate_model(settings)
    if where.source == "hub-repo-missing":
        log.error("%s%s is not in any hub cache (%s)", HUB_SCHEME, settings.hub_repo,
                  ", ".join(str(c) for c in hub_caches()))
    elif where.source == "hub-cache":
        log.info("no weights at %s: using the hub cache at %s", settings.model_path, where.paths.root)
    elif where.source == "demo":
        if not where.paths.has_weights():
            from boson_multimodal.demo import write_demo_bundle

            write_demo_bundle(settings.demo_model_dir)
        log.warning("no weights at %s: using the DEMO bundle at %s (random weights, noise)",
                    settings.model_path, settings.demo_model_dir)
    return where.paths


def _s3_config(settings: Settings):
    """The S3 settings, for the object store and the S3 voice library alike."""
    from adapters.s3 import S3Config

    mib = 1024 * 1024
    threshold = settings.s3_multipart_threshold_mb
    return S3Config(
        endpoint_url=settings.s3_endpoint_url,
        region=settings.aws_region,
        path_style=settings.s3_path_style,
        access_key_id=settings.bucket_access_key_id,
        secret_access_key=settings.bucket_secret_access_key,
        **given(multipart_threshold=threshold and threshold * mib,
                 part_size=threshold and max(8, threshold) * mib,  # parts of at least 8 MiB
                 presign_expiry=settings.s3_presign_expiry, max_attempts=settings.s3_max_attempts),
    )


def _s3_store(settings: Settings):
    from adapters.s3 import S3ObjectStore

    return S3ObjectStore(_s3_config(settings))



def validate_storage(container: "Container") -> None:
    """At server start: a configured default S3 bucket must exist and be writable by us."""
    settings = container.settings()
    store = container.object_store()
    if settings.s3_bucket and store is not None:
        store.validate_bucket_access(settings.s3_bucket)


def _voices(settings: Settings, paths: ModelPaths | None):
    """The voice library: under an S3 prefix when HIGGS_VOICES_S3_URI is set (every worker of
    an endpoint shares it), else the volume's voice_prompts/, else (fake engine) in memory."""
    if settings.voices_s3_uri:
        from adapters.s3 import s3_client
        from adapters.voices.s3 import S3VoiceLibrary, parse_s3_uri

        bucket, prefix = parse_s3_uri(settings.voices_s3_uri)
        return S3VoiceLibrary(s3_client(_s3_config(settings)), bucket, prefix)
    if paths is None:
        return InMemoryVoiceLibrary.with_demo_voices()
    return VolumeVoiceLibrary(paths.voices)


def _result_cache(settings: Settings, store):
    """HIGGS_RESULT_CACHE=on and a store with a default bucket: seeded repeats come from it."""
    if not settings.result_cache:
        return None
    if store is None or not settings.s3_bucket and settings.store_kind != "local":
        log.warning("HIGGS_RESULT_CACHE is on but no object store with a bucket is configured: it stays off")
        return None
    from core.service.result_cache import ResultCache

    return ResultCache(store, settings.s3_bucket or "result-cache", settings.s3_key_prefix)


def _higgs_engine(paths: ModelPaths, settings: Settings, voices):
    from adapters.higgs import HiggsSpeechEngine

    return HiggsSpeechEngine(paths, device=settings.device, max_cache_len=settings.max_cache_len,
                             max_batch=settings.max_batch, prefix_cache_mb=settings.prefix_cache_mb,
                             warm_voices=lambda: _warm_voices(voices, settings.warm_voices), dtype=settings.dtype,
                             cuda_graphs=settings.cuda_graphs, gpu_memory_fraction=settings.gpu_memory_fraction)


def _warm_voices(voices, names):
    """The voices HIGGS_WARM_VOICES names; one that is missing is said and skipped (a typo must
    not keep the model from warming)."""
    found = []
    for name in names:
        try:
            found.append(voices.get(name))
        except DomainError as error:
            log.warning("HIGGS_WARM_VOICES: %s is skipped: %s", name, error.message)
    return found


def resolve_asr_path(settings: Settings) -> Path | None:
    """HIGGS_ASR_MODEL: a directory; else MODEL_PATH/<repo id> (where `download --asr` puts
    it); else the repo in a hub cache (no network). None when it is unset; the volume path
    when it is nowhere (loading then says so, and the log names every place looked in)."""
    name = settings.asr_model
    if not name:
        return None
    repo = name.removeprefix(HUB_SCHEME)
    looked = [Path(repo), settings.model_path / repo]
    for candidate in looked:
        if (candidate / "config.json").is_file():
            return candidate
    for cache in hub_caches():
        snapshot = cached_snapshot(repo, cache)
        if snapshot is not None:
            return snapshot
    log.error("HIGGS_ASR_MODEL=%s is not at %s nor in a hub cache (%s)", name,
              " nor ".join(str(p) for p in looked), ", ".join(str(c) for c in hub_caches()))
    return settings.model_path / repo


def _transcriber(settings: Settings):
    path = resolve_asr_path(settings)
    if path is None:
        return None
    from adapters.whisper import WhisperTranscriber

    return WhisperTranscriber(path, name=settings.asr_model, device=settings.device, dtype=settings.dtype,
                              batch_size=settings.asr_batch, language=settings.asr_language)


def _asr(transcriber):
    if transcriber is None:
        return None
    from adapters.whisper import error_rate
    from core.service.verification import Asr

    return Asr(transcriber, error_rate)


def _verification(settings: Settings):
    from core.domain.verification import Verification

    return Verification(settings.verify, settings.max_wer, settings.verify_attempts)


def _stretcher():
    from adapters.pedalboard import RubberBandStretcher  # pedalboard loads only when a service is built

    return RubberBandStretcher()


class Container(containers.DeclarativeContainer):
    settings = providers.Singleton(Settings.from_env)

    tracer_provider = providers.Singleton(make_tracer_provider, settings)
    tracer = providers.Singleton(OtelTracer, tracer_provider)

    model_paths = providers.Singleton(resolve_model_paths, settings)

    voice_library = providers.Selector(
        providers.Callable(lambda s: s.engine, settings),
        fake=providers.Singleton(_voices, settings, None),
        higgs=providers.Singleton(_voices, settings, model_paths),
    )

    engine = providers.Selector(
        providers.Callable(lambda s: s.engine, settings),
        fake=providers.Singleton(FakeSpeechEngine),
        higgs=providers.Singleton(_higgs_engine, model_paths, settings, voice_library),
    )
    encoder = providers.Singleton(SoundfileEncoder)
    transcriber = providers.Singleton(_transcriber, settings)
    object_store = providers.Selector(
        providers.Callable(lambda s: s.store_kind, settings),
        local=providers.Singleton(LocalObjectStore, providers.Callable(lambda s: s.output_dir, settings)),
        s3=providers.Singleton(_s3_store, settings),
        none=providers.Object(None),
    )

    archive = providers.Singleton(
        AudioArchive,
        store=object_store,
        default_bucket=providers.Callable(lambda s: s.s3_bucket, settings),
        key_prefix=providers.Callable(lambda s: s.s3_key_prefix, settings),
        tracer=tracer,
    )
    generate_speech = providers.Singleton(
        GenerateSpeech,
        engine=engine,
        voices=voice_library,
        encoder=encoder,
        archive=archive,
        tracer=tracer,
        result_cache=providers.Singleton(_result_cache, settings, object_store),
        stretcher=providers.Singleton(_stretcher),
        asr=providers.Singleton(_asr, transcriber),
        verification=providers.Singleton(_verification, settings),
    )
    speech_service = providers.Singleton(SpeechService, generate=generate_speech, engine=engine,
                                         voices=voice_library, transcriber=transcriber,
                                         max_queue=settings.provided.max_queue)


def override_settings(container: Container, **changes: Any) -> None:
    """Settings a command line flag gives instead of the environment (`serve --max-queue`):
    before anything built from them is made."""
    container.settings.override(providers.Object(replace(container.settings(), **changes)))


def build_container(settings: Settings | None = None) -> Container:
    container = Container()
    if settings is not None:
        container.settings.override(providers.Object(settings))
    return container
