"""Integrations of higgs-tts into voice-agent frameworks (each an extra: pip install higgs-tts[livekit])."""
