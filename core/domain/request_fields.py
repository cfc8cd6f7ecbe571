"""The request's fields, one line each, for every face of the service.

A line gives a field's service name (RunPod's input key, and the `field` the domain's errors
name), where its value lands in the SpeechRequest (`sampling.top_k`: the Sampling's `top_k`),
the JSON type a JSON face checks before the domain sees the value (None: the domain's own
check covers the type), and each face's own name for it where that differs (None: the face
does not take it). The domain's dataclasses hold every rule on values; this table only says
which value goes where, so a new request field is one line here plus its rule in its dataclass.

Voices are not in the table: each face has its own shape for them (a list of names, a clip and
its transcript, one message per voice) and hands `assemble` the voice refs it built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from core.domain.errors import DomainError, ErrorCode, safe_text, validation_error
from core.domain.request import Chunking, OutputTarget, Sampling, SpeechRequest, VoiceRef
from core.domain.verification import Verification

FACES = ("runpod", "http", "grpc", "cli")
_SAME = ""  # a face's name for a field is the service name
_JSON_TYPES: dict[type, str] = {str: "string"}  # the JSON types a face checks, as the errors name them


@dataclass(frozen=True)
class RequestField:
    name: str
    into: str  # "text", or "<part>.<attribute>" for the request's parts
    code: ErrorCode | None = None  # what a value of the wrong JSON type is refused with
    json: type | None = None
    required: bool = False
    blank_is_absent: bool = False  # "" means "not given" (JSON faces send "" for an unset string)
    faces: Mapping[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert (self.json is None) == (self.code is None), f"{self.name}: a JSON type needs its error code"
        assert self.json is None or self.json in _JSON_TYPES, f"{self.name}: no JSON name for {self.json}"
        assert set(self.faces) <= set(FACES), f"{self.name}: unknown face in {sorted(self.faces)}"

    def on(self, face: str) -> str | None:
        """This face's name for the field; None when the face does not take it."""
        name = self.faces.get(face, _SAME)
        return self.name if name == _SAME else name


def _f(name: str, into: str, code: ErrorCode | None = None, json: type | None = None, *, required: bool = False,
       blank_is_absent: bool = False, **faces: str | None) -> RequestField:
    return RequestField(name, into, code, json, required, blank_is_absent, faces)


FIELDS: tuple[RequestField, ...] = (
    _f("transcript", "text", ErrorCode.INVALID_TRANSCRIPT, str, required=True, http="input", grpc="text",
       cli="text"),
    _f("scene_prompt", "scene_prompt", ErrorCode.INVALID_SCENE_PROMPT, str, blank_is_absent=True,
       http="instructions", cli="scene"),
    _f("temperature", "sampling.temperature", grpc="sampling.temperature"),
    _f("top_k", "sampling.top_k", grpc="sampling.top_k"),
    _f("top_p", "sampling.top_p", grpc="sampling.top_p"),
    _f("max_new_tokens", "sampling.max_new_tokens", grpc="sampling.max_new_tokens"),
    _f("seed", "sampling.seed", grpc="sampling.seed"),
    _f("ras_win_len", "sampling.ras_win_len", grpc="sampling.ras_win_len"),
    _f("ras_win_max_num_repeat", "sampling.ras_win_max_num_repeat", grpc="sampling.ras_win_max_num_repeat"),
    _f("chunk_method", "chunking.method", ErrorCode.INVALID_CHUNKING, str, grpc="chunking.method"),
    _f("chunk_max_word_num", "chunking.max_word_num", grpc="chunking.max_word_num"),
    _f("chunk_max_num_turns", "chunking.max_num_turns", grpc="chunking.max_num_turns"),
    _f("s3_bucket", "output.bucket", ErrorCode.INVALID_S3_BUCKET, str, blank_is_absent=True,
       grpc="output.s3_bucket", cli="bucket"),
    _f("s3_key", "output.key", ErrorCode.INVALID_S3_KEY, str, blank_is_absent=True, grpc="output.s3_key",
       cli="key"),
    _f("overwrite", "output.overwrite", grpc="output.overwrite"),
    _f("output_format", "output_format", ErrorCode.INVALID_OUTPUT_FORMAT, str, http=None, cli="format"),
    _f("speed", "speed"),
    _f("verify", "verification.mode", grpc="verification.mode"),
    _f("max_wer", "verification.max_wer", grpc="verification.max_wer"),
    _f("max_attempts", "verification.max_attempts", grpc="verification.max_attempts"),
    _f("timestamps", "timestamps"),
    _f("request_id", "request_id", ErrorCode.INVALID_REQUEST_ID, str, runpod=None, http=None, cli=None),
)
BY_NAME = {f.name: f for f in FIELDS}
# the request's parts, by the prefix of `into`; the output target exists only with a bucket or key
PARTS: dict[str, type] = {"sampling": Sampling, "chunking": Chunking, "output": OutputTarget,
                          "verification": Verification}


def face_names(face: str) -> dict[str, str]:
    """Service name -> this face's name, for the fields the face takes."""
    return {f.name: name for f in FIELDS if (name := f.on(face)) is not None}


def read_json(body: Mapping[str, Any], face: str, face_only: frozenset[str] = frozenset(),
              what: str = "field") -> tuple[dict[str, Any], dict[str, Any]]:
    """A JSON face's object -> (the table's values by service name, the face's own fields).
    Unknown keys are refused, JSON null is "not given", a value of the wrong JSON type is
    refused with its field's code, a required field must be there."""
    names = {name: f for f in FIELDS if (name := f.on(face)) is not None}
    unknown = sorted(str(k) for k in body if k not in names and k not in face_only)
    if unknown:
        shown = ", ".join(repr(safe_text(name, 40)) for name in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise validation_error(ErrorCode.UNKNOWN_FIELD, f"unknown {what}(s): {shown}{more}", field=unknown[0],
                               constraint="known_field", actual=unknown, allowed=sorted({*names, *face_only}))
    values: dict[str, Any] = {}
    for name, f in names.items():
        value = body.get(name)
        if value is None:
            if f.required:
                raise validation_error(f.code or ErrorCode.INVALID_INPUT, f"{name} is required", field=name,
                                       constraint="required")
            continue
        if f.json is not None and not isinstance(value, f.json):
            kind = _JSON_TYPES[f.json]
            raise validation_error(f.code or ErrorCode.INVALID_INPUT, f"{name} must be a {kind}", field=name,
                                   constraint=f"type={kind}", actual_type=type(value).__name__)
        values[f.name] = value
    own = {k: v for k, v in body.items() if k in face_only and v is not None}
    return values, own


def assemble(values: Mapping[str, Any], voices: tuple[VoiceRef, ...] = (), names: Mapping[str, str] | None = None,
             **given: Any) -> SpeechRequest:
    """The SpeechRequest of the given values (service names; what is absent takes the domain's
    default). `given` are SpeechRequest arguments a face sets itself (a request id). A refusal
    names its field by `names` (service name -> the face's, as `face_names` gives them)."""
    try:
        return _assemble(values, voices, given)
    except DomainError as error:
        raise error.renamed(names or {}) from None


def _assemble(values: Mapping[str, Any], voices: tuple[VoiceRef, ...], given: dict[str, Any]) -> SpeechRequest:
    top: dict[str, Any] = {}
    parts: dict[str, dict[str, Any]] = {part: {} for part in PARTS}
    for name, value in values.items():
        f = BY_NAME[name]
        if f.blank_is_absent and value == "":
            continue
        part, _, attribute = f.into.rpartition(".")
        (parts[part] if part else top)[attribute] = value
    built = {part: PARTS[part](**kwargs) for part, kwargs in parts.items() if kwargs}
    output = built.pop("output", None)
    if output is not None and (output.bucket is not None or output.key is not None):
        top["output"] = output  # `overwrite` alone names no target
    return SpeechRequest(voices=voices, **top, **built, **given)
