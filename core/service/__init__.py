"""The use cases over the domain and the ports: what the driving adapters call."""

from core.service.archive import AudioArchive
from core.service.generate_speech import GenerateSpeech
from core.service.outcome import Outcome, collect
from core.service.result_cache import ResultCache
from core.service.speech_service import SpeechService
from core.service.threads import iterate_in_thread

__all__ = ["AudioArchive", "GenerateSpeech", "Outcome", "ResultCache", "SpeechService", "collect", "iterate_in_thread"]
