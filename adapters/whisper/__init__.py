"""The Transcriber port on transformers' Whisper, and the error rate it is scored with."""

from adapters.whisper.transcriber import WhisperTranscriber
from adapters.whisper.wer import error_rate

__all__ = ["WhisperTranscriber", "error_rate"]
