"""The ASR pass's fields on the gRPC face: the Verification and Timestamps enums, and the
ChunkVerified event."""

from __future__ import annotations

from typing import Any

from core.domain.events import ChunkVerified
from core.domain.request import SpeechRequest
from core.domain.verification import Timestamps, VerifyMode
from higgs_tts.v1 import speech_pb2 as pb

# the enums -> the domain's values; UNSPECIFIED is "not given"
VERIFY_MODES = {pb.VERIFY_MODE_OFF: VerifyMode.OFF, pb.VERIFY_MODE_ON: VerifyMode.ON,
                pb.VERIFY_MODE_REPORT: VerifyMode.REPORT}
_MODE_ENUMS = {None: pb.VERIFY_MODE_UNSPECIFIED, **{v: k for k, v in VERIFY_MODES.items()}}
TIMESTAMPS = {pb.TIMESTAMPS_NONE: Timestamps.NONE, pb.TIMESTAMPS_WORD: Timestamps.WORD}


def message_fields(request: SpeechRequest) -> dict[str, Any]:
    """The inverse, for clients."""
    v = request.verification
    fields: dict[str, Any] = {"mode": _MODE_ENUMS[v.mode]}
    if v.max_wer is not None:
        fields["max_wer"] = v.max_wer
    if v.max_attempts is not None:
        fields["max_attempts"] = v.max_attempts
    timestamps = pb.TIMESTAMPS_WORD if request.timestamps is Timestamps.WORD else pb.TIMESTAMPS_UNSPECIFIED
    return {"verification": pb.Verification(**fields), "timestamps": timestamps}


def verified_message(event: ChunkVerified) -> pb.SpeechEvent:
    r = event.result
    return pb.SpeechEvent(verified=pb.ChunkVerified(
        chunk=r.chunk, text=r.text, transcript=r.transcript, attempts=r.attempts, kept=r.kept, passed=r.passed,
        words=[pb.WordTiming(word=w.word, start=w.start, end=w.end) for w in r.words], error=r.error or "",
        **({"wer": r.wer} if r.wer is not None else {})))
