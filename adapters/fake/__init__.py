"""Deterministic stand-ins for the driven ports: fast enough for unit tests, real enough for
the contract suites and for running the service without a model."""

from adapters.fake.engine import FakeSpeechEngine
from adapters.fake.object_store import InMemoryObjectStore
from adapters.fake.voices import InMemoryVoiceLibrary, tone_clip

__all__ = ["FakeSpeechEngine", "InMemoryObjectStore", "InMemoryVoiceLibrary", "tone_clip"]
