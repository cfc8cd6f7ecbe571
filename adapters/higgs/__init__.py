from adapters.higgs.engine import HiggsSpeechEngine

__all__ = ["HiggsSpeechEngine"]
