from adapters.soundfile.encoder import SoundfileEncoder

__all__ = ["SoundfileEncoder"]
