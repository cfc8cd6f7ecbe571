"""What the core needs from the outside world, as small protocols."""

from core.ports.audio_encoder import AudioEncoder
from core.ports.object_store import ObjectStore, StoredObject
from core.ports.speech_engine import (
    EngineAudio,
    EngineDone,
    EngineEvent,
    EngineLoad,
    EngineProgress,
    EngineTimings,
    EngineWork,
    ModelInfo,
    SpeechEngine,
)
from core.ports.tracer import NoopTracer, Span, Tracer
from core.ports.voice_library import VoiceLibrary

__all__ = [
    "AudioEncoder",
    "EngineAudio",
    "EngineDone",
    "EngineEvent",
    "EngineLoad",
    "EngineProgress",
    "EngineTimings",
    "EngineWork",
    "ModelInfo",
    "NoopTracer",
    "ObjectStore",
    "Span",
    "SpeechEngine",
    "StoredObject",
    "Tracer",
    "VoiceLibrary",
]
