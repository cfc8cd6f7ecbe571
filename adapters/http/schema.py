"""OpenAI's `audio.speech` request, and this service's extensions, mapped onto a SpeechRequest;
DomainErrors mapped onto OpenAI's error shape and HTTP statuses (the gRPC table's meanings)."""

from __future__ import annotations

from typing import Any, Mapping

from core.domain.captions import CAPTION_FORMATS
from core.domain.errors import DomainError, ErrorCode, ErrorType, validation_error
from core.domain.request import NamedVoice, SpeechRequest, parse_voice_list
from core.domain.request_fields import assemble, face_names, read_json

MODEL_ID = "higgs-audio-v2"
# what OpenAI clients and chat front-ends send as `model`; all mean this one
MODEL_ALIASES = frozenset({MODEL_ID, "higgs-audio-v2-generation-3B-base", "tts-1", "tts-1-hd", "gpt-4o-mini-tts"})
# OpenAI's fields and this service's extensions that the table (core.domain.request_fields) does
# not carry: the model, the voices (a name, or one name per [SPEAKERn]) and the response's shape
OWN_FIELDS = frozenset({"model", "voice", "voices", "response_format", "stream_format"})
NAMES = face_names("http")  # the table's fields, as this face names them
FIELDS = OWN_FIELDS | set(NAMES.values())
RESPONSE_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm", *CAPTION_FORMATS)  # srt, vtt: the captions
STORED_FORMAT = {"mp3": "mp3", "flac": "flac", "wav": "wav"}  # what goes to S3; the others store WAV


def speech_request(body: Any, request_id: str | None = None) -> tuple[SpeechRequest, str, str]:
    """(request, response_format, stream_format), or a DomainError naming the field."""
    if not isinstance(body, Mapping):
        raise validation_error(ErrorCode.INVALID_INPUT, "the body must be a JSON object", field="body",
                               constraint="type=object", actual_type=type(body).__name__)
    values, own = read_json(body, "http", OWN_FIELDS)
    model = own.get("model", MODEL_ID)
    if not isinstance(model, str) or model not in MODEL_ALIASES:
        raise validation_error(ErrorCode.INVALID_INPUT, f"unknown model; this server speaks {MODEL_ID!r}",
                               field="model", constraint="one_of", actual=model, allowed=sorted(MODEL_ALIASES))
    response_format = own.get("response_format", "mp3")
    if response_format not in RESPONSE_FORMATS:
        raise validation_error(ErrorCode.INVALID_OUTPUT_FORMAT, "unknown response_format", field="response_format",
                               constraint="one_of", actual=response_format, allowed=list(RESPONSE_FORMATS))
    stream_format = own.get("stream_format", "audio")
    if stream_format not in ("audio", "sse"):
        raise validation_error(ErrorCode.INVALID_INPUT, "stream_format is 'audio' or 'sse'", field="stream_format",
                               constraint="one_of", actual=stream_format, allowed=["audio", "sse"])
    if response_format in CAPTION_FORMATS:
        if stream_format != "audio":
            raise validation_error(ErrorCode.INVALID_OUTPUT_FORMAT, f"response_format {response_format} (captions) "
                                   "is sent whole, not as speech events", field="stream_format",
                                   constraint="equals=audio", actual=stream_format)
        values["timestamps"] = "word"
    values["output_format"] = STORED_FORMAT.get(response_format, "wav")
    request = assemble(values, _voices(own), NAMES, **({"request_id": request_id} if request_id else {}))
    return request, response_format, stream_format


def _voices(given: Mapping[str, Any]) -> tuple[NamedVoice, ...]:
    """`voice`: a name or {"id": name} (OpenAI's two shapes); `voices`: names, one per
    [SPEAKERn] of a dialogue. One or the other."""
    if given.get("voice") not in (None, "") and "voices" in given:  # OpenAI clients always send a voice
        raise validation_error(ErrorCode.INVALID_VOICE_NAME, "give `voice` or `voices`, not both", field="voices",
                               constraint="exclusive_with=voice")
    if "voices" in given:
        names = given["voices"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise validation_error(ErrorCode.INVALID_VOICE_NAME, "voices is a list of voice names", field="voices",
                                   constraint="type=list[string]")
        return parse_voice_list(",".join(names)) if names else ()
    voice = given.get("voice")
    if isinstance(voice, Mapping):  # OpenAI's object shape: exactly {"id": "<name>"}
        if set(voice) != {"id"} or not isinstance(voice["id"], str) or not voice["id"]:
            raise validation_error(ErrorCode.INVALID_VOICE_NAME, 'voice is a name or {"id": "<name>"}', field="voice",
                                   constraint="name_or_object", actual=voice)
        voice = voice["id"]
    if voice is None or voice == "":
        return ()
    if not isinstance(voice, str):
        raise validation_error(ErrorCode.INVALID_VOICE_NAME, 'voice is a name or {"id": "<name>"}', field="voice",
                               constraint="name_or_object", actual_type=type(voice).__name__)
    return (NamedVoice(voice),)


# -- errors ----------------------------------------------------------------------------------------

_STATUS_BY_CODE = {
    ErrorCode.UNKNOWN_VOICE.value: 404,
    ErrorCode.VOICE_EXISTS.value: 409,
    ErrorCode.OBJECT_EXISTS.value: 409,
    ErrorCode.QUEUE_FULL.value: 429,
    ErrorCode.PAYLOAD_TOO_LARGE.value: 413,
    ErrorCode.CANCELLED.value: 499,
    ErrorCode.S3_ACCESS_DENIED.value: 403,
    ErrorCode.S3_NO_SUCH_BUCKET.value: 400,
    ErrorCode.UNAUTHENTICATED.value: 401,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE.value: 415,
    ErrorCode.NOT_FOUND.value: 404,
    ErrorCode.METHOD_NOT_ALLOWED.value: 405,
    ErrorCode.SHUTTING_DOWN.value: 503,
    ErrorCode.MODEL_NOT_READY.value: 503,
}
_STATUS_BY_TYPE = {
    ErrorType.VALIDATION: 400,
    ErrorType.MODEL: 503,
    ErrorType.INFERENCE: 500,
    ErrorType.STORAGE: 503,
    ErrorType.TIMEOUT: 504,
    ErrorType.SYSTEM: 500,
    ErrorType.AUTHENTICATION: 401,
}
# OpenAI's error types, by HTTP status class
_OPENAI_TYPE = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 405: "invalid_request_error", 409: "conflict_error",
                413: "invalid_request_error", 415: "invalid_request_error", 429: "rate_limit_error"}


# seconds a caller should wait before trying again (another replica, through a proxy, at once)
_RETRY_AFTER = {
    ErrorCode.SHUTTING_DOWN.value: 1,  # this replica is draining: the next try goes elsewhere
    ErrorCode.QUEUE_FULL.value: 1,
    ErrorCode.MODEL_NOT_READY.value: 5,  # a model load takes seconds to minutes
}


def http_status(error: DomainError) -> int:
    return _STATUS_BY_CODE.get(error.code) or _STATUS_BY_TYPE[error.type]


def retry_after(error: DomainError) -> int | None:
    """The Retry-After seconds of a refusal that a retry can cure; None for the rest."""
    return _RETRY_AFTER.get(error.code)


def error_body(error: DomainError) -> dict[str, Any]:
    """OpenAI's shape; `code` is this project's stable code, `details` and `error_type` its own."""
    status = http_status(error)
    return {"error": {
        "message": error.message,
        "type": _OPENAI_TYPE.get(status, "server_error"),
        "code": error.code,
        "param": error.details.get("field"),
        "error_type": error.type.value,
        "details": error.details,
    }}
