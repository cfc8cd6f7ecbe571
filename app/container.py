"""The composition root: which adapter backs which port, decided once from Settings.

Tests override providers (`container.engine.override(providers.Object(fake))`)."""

from __future__ import annotations

from dependency_injector import containers, providers

from adapters.fake import FakeSpeechEngine, InMemoryVoiceLibrary
from adapters.local import LocalObjectStore
from adapters.otel import OtelTracer
from app.settings import Settings
from app.telemetry import make_tracer_provider
from core.domain.audio import WavEncoder
from core.domain.generate_speech import GenerateSpeech


def _higgs_engine(settings: Settings):
    raise NotImplementedError("the Higgs engine is not wired yet; set HIGGS_ENGINE=fake")


class Container(containers.DeclarativeContainer):
    settings = providers.Singleton(Settings.from_env)

    tracer_provider = providers.Singleton(make_tracer_provider, settings)
    tracer = providers.Singleton(OtelTracer, tracer_provider)

    engine = providers.Selector(
        providers.Callable(lambda s: s.engine, settings),
        fake=providers.Singleton(FakeSpeechEngine),
        higgs=providers.Singleton(_higgs_engine, settings),
    )
    voice_library = providers.Selector(
        providers.Callable(lambda s: s.engine, settings),
        fake=providers.Singleton(InMemoryVoiceLibrary.with_demo_voices),
        higgs=providers.Singleton(InMemoryVoiceLibrary.with_demo_voices),
    )
    encoder = providers.Singleton(WavEncoder)
    object_store = providers.Selector(
        providers.Callable(lambda s: s.store_kind, settings),
        local=providers.Singleton(LocalObjectStore, providers.Callable(lambda s: s.output_dir, settings)),
        none=providers.Object(None),
    )

    generate_speech = providers.Singleton(
        GenerateSpeech,
        engine=engine,
        voices=voice_library,
        encoder=encoder,
        store=object_store,
        tracer=tracer,
        default_bucket=providers.Callable(lambda s: s.s3_bucket, settings),
        key_prefix=providers.Callable(lambda s: s.s3_key_prefix, settings),
    )


def build_container(settings: Settings | None = None) -> Container:
    container = Container()
    if settings is not None:
        container.settings.override(providers.Object(settings))
    return container
