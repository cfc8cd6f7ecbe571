"""Checked by mypy in `make test` (not run): every adapter is its port, method signatures and
return types included. Protocols are structural, so without this a changed port or adapter
signature is only found when a call fails."""

from __future__ import annotations

from adapters.fake import FakeSpeechEngine, FakeTranscriber, InMemoryObjectStore, InMemoryVoiceLibrary
from adapters.higgs import HiggsSpeechEngine
from adapters.local import LocalObjectStore
from adapters.otel import OtelTracer
from adapters.pedalboard import RubberBandStretcher
from adapters.s3 import S3ObjectStore
from adapters.soundfile import SoundfileEncoder
from adapters.voices import VolumeVoiceLibrary
from adapters.voices.s3 import S3VoiceLibrary
from adapters.whisper import WhisperTranscriber
from core.domain.audio import WavEncoder
from core.ports import AudioEncoder, ObjectStore, SpeechEngine, Tracer, VoiceLibrary
from core.ports.speech_engine import ChunkCheck
from core.ports.time_stretcher import TimeStretcher
from core.ports.transcriber import Transcriber
from core.service.verification import ChunkVerifier


def engines(fake: FakeSpeechEngine, higgs: HiggsSpeechEngine) -> list[SpeechEngine]:
    return [fake, higgs]


def stores(memory: InMemoryObjectStore, local: LocalObjectStore, s3: S3ObjectStore) -> list[ObjectStore]:
    return [memory, local, s3]


def voice_libraries(memory: InMemoryVoiceLibrary, volume: VolumeVoiceLibrary,
                    s3: S3VoiceLibrary) -> list[VoiceLibrary]:
    return [memory, volume, s3]


def encoders(soundfile: SoundfileEncoder, wav: WavEncoder) -> list[AudioEncoder]:
    return [soundfile, wav]


def tracers(otel: OtelTracer) -> list[Tracer]:
    return [otel]


def stretchers(rubber_band: RubberBandStretcher) -> list[TimeStretcher]:
    return [rubber_band]


def transcribers(fake: FakeTranscriber, whisper: WhisperTranscriber) -> list[Transcriber]:
    return [fake, whisper]


def checks(verifier: ChunkVerifier) -> list[ChunkCheck]:
    return [verifier]
