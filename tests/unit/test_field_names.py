"""A refused reference clip names the field as the face that received it names it: the domain
checks it under RunPod's names (`ref_audio_base64`, `ref_audio_transcript`); gRPC, the CLI and
the HTTP upload (tested with the server) each say their own."""

import io

import numpy as np
import pytest
import soundfile

from adapters.grpc.messages import request_from_message
from app.cli import build_parser, request_from_args
from core.domain.errors import DomainError, ErrorCode, ErrorType, validation_error
from higgs_tts.v1 import speech_pb2 as pb


def _clip() -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(24000, dtype=np.float32), 24000, format="WAV")
    return buffer.getvalue()


def test_renamed_changes_only_the_field_and_keeps_the_rest():
    error = validation_error(ErrorCode.INVALID_REFERENCE_AUDIO, "needs words", field="ref_audio_transcript",
                             constraint="not_empty", actual="")
    renamed = error.renamed({"ref_audio_transcript": "transcript"})
    assert renamed.details == {"field": "transcript", "constraint": "not_empty", "actual": ""}
    assert (renamed.type, renamed.code, renamed.message) == (error.type, error.code, error.message)
    assert error.details["field"] == "ref_audio_transcript"  # the original is untouched
    other = DomainError(ErrorType.VALIDATION, ErrorCode.INVALID_SEED, "bad", {"field": "seed"})
    assert other.renamed({"ref_audio_transcript": "transcript"}) is other
    plain = DomainError(ErrorType.SYSTEM, ErrorCode.INTERNAL_ERROR, "no field")
    assert plain.renamed({"ref_audio_transcript": "transcript"}) is plain


@pytest.mark.parametrize("audio, transcript, name, field", [
    (b"", "Words.", "", "voices[0].reference.audio"),
    (b"\0" * (13 * 1024 * 1024), "Words.", "", "voices[0].reference.audio"),
    (None, "", "", "voices[0].reference.transcript"),
    (None, "  ", "", "voices[0].reference.transcript"),
    (None, "Words.", "../up", "voices[0].reference.name"),
])
def test_grpc_names_the_reference_fields_of_its_message(audio, transcript, name, field):
    message = pb.SpeechRequest(text="Hello.")
    message.voices.add().reference.CopyFrom(pb.ReferenceAudio(audio=_clip() if audio is None else audio,
                                                              transcript=transcript, name=name))
    with pytest.raises(DomainError) as caught:
        request_from_message(message)
    assert caught.value.details["field"] == field
    assert caught.value.code in (ErrorCode.INVALID_REFERENCE_AUDIO, ErrorCode.INVALID_VOICE_NAME)


@pytest.mark.parametrize("content, ref_text, field", [
    (b"", "Words.", "--ref-audio"),
    (None, None, "--ref-text"),
    (None, "   ", "--ref-text"),
])
def test_the_cli_names_its_flags(tmp_path, content, ref_text, field):
    clip = tmp_path / "me.wav"
    clip.write_bytes(_clip() if content is None else content)
    argv = ["synth", "--text", "Hello.", "--ref-audio", str(clip)] + (["--ref-text", ref_text] if ref_text else [])
    with pytest.raises(DomainError) as caught:
        request_from_args(build_parser().parse_args(argv))
    assert caught.value.details["field"] == field and caught.value.code == ErrorCode.INVALID_REFERENCE_AUDIO

