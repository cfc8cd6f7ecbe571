from adapters.voices.library import VolumeVoiceLibrary

__all__ = ["VolumeVoiceLibrary"]
