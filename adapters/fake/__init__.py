"""Deterministic stand-ins for the driven ports: fast enough for unit tests, real enough for
the contract suites and for running the service without a model."""

from adapters.fake.engine import FakeSpeechEngine
from adapters.fake.object_store import InMemoryObjectStore
from adapters.fake.transcriber import FakeTranscriber
from adapters.fake.voices import InMemoryVoiceLibrary, tone_clip

__all__ = ["FakeSpeechEngine", "FakeTranscriber", "InMemoryObjectStore", "InMemoryVoiceLibrary", "tone_clip"]
