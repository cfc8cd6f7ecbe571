"""Generated from protos/higgs_tts/v1/speech.proto by `make protos`."""
