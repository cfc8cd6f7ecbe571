from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VerifyMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERIFY_MODE_UNSPECIFIED: _ClassVar[VerifyMode]
    VERIFY_MODE_OFF: _ClassVar[VerifyMode]
    VERIFY_MODE_ON: _ClassVar[VerifyMode]
    VERIFY_MODE_REPORT: _ClassVar[VerifyMode]

class Timestamps(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIMESTAMPS_UNSPECIFIED: _ClassVar[Timestamps]
    TIMESTAMPS_NONE: _ClassVar[Timestamps]
    TIMESTAMPS_WORD: _ClassVar[Timestamps]

class ChunkMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHUNK_METHOD_UNSPECIFIED: _ClassVar[ChunkMethod]
    CHUNK_METHOD_NONE: _ClassVar[ChunkMethod]
    CHUNK_METHOD_WORD: _ClassVar[ChunkMethod]
    CHUNK_METHOD_SPEAKER: _ClassVar[ChunkMethod]
    CHUNK_METHOD_AUTO: _ClassVar[ChunkMethod]

class OutputFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_FORMAT_UNSPECIFIED: _ClassVar[OutputFormat]
    OUTPUT_FORMAT_WAV: _ClassVar[OutputFormat]
    OUTPUT_FORMAT_FLAC: _ClassVar[OutputFormat]
    OUTPUT_FORMAT_OGG: _ClassVar[OutputFormat]
    OUTPUT_FORMAT_MP3: _ClassVar[OutputFormat]

class AudioEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIO_ENCODING_UNSPECIFIED: _ClassVar[AudioEncoding]
    AUDIO_ENCODING_PCM_S16LE: _ClassVar[AudioEncoding]
    AUDIO_ENCODING_PCM_F32LE: _ClassVar[AudioEncoding]
VERIFY_MODE_UNSPECIFIED: VerifyMode
VERIFY_MODE_OFF: VerifyMode
VERIFY_MODE_ON: VerifyMode
VERIFY_MODE_REPORT: VerifyMode
TIMESTAMPS_UNSPECIFIED: Timestamps
TIMESTAMPS_NONE: Timestamps
TIMESTAMPS_WORD: Timestamps
CHUNK_METHOD_UNSPECIFIED: ChunkMethod
CHUNK_METHOD_NONE: ChunkMethod
CHUNK_METHOD_WORD: ChunkMethod
CHUNK_METHOD_SPEAKER: ChunkMethod
CHUNK_METHOD_AUTO: ChunkMethod
OUTPUT_FORMAT_UNSPECIFIED: OutputFormat
OUTPUT_FORMAT_WAV: OutputFormat
OUTPUT_FORMAT_FLAC: OutputFormat
OUTPUT_FORMAT_OGG: OutputFormat
OUTPUT_FORMAT_MP3: OutputFormat
AUDIO_ENCODING_UNSPECIFIED: AudioEncoding
AUDIO_ENCODING_PCM_S16LE: AudioEncoding
AUDIO_ENCODING_PCM_F32LE: AudioEncoding

class SpeechRequest(_message.Message):
    __slots__ = ("text", "voices", "scene_prompt", "sampling", "chunking", "output", "output_format", "encoding", "request_id", "omit_audio", "speed", "verification", "timestamps", "max_result_bytes")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    VOICES_FIELD_NUMBER: _ClassVar[int]
    SCENE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    CHUNKING_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OMIT_AUDIO_FIELD_NUMBER: _ClassVar[int]
    SPEED_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    MAX_RESULT_BYTES_FIELD_NUMBER: _ClassVar[int]
    text: str
    voices: _containers.RepeatedCompositeFieldContainer[Voice]
    scene_prompt: str
    sampling: Sampling
    chunking: Chunking
    output: OutputTarget
    output_format: OutputFormat
    encoding: AudioEncoding
    request_id: str
    omit_audio: bool
    speed: float
    verification: Verification
    timestamps: Timestamps
    max_result_bytes: int
    def __init__(self, text: _Optional[str] = ..., voices: _Optional[_Iterable[_Union[Voice, _Mapping]]] = ..., scene_prompt: _Optional[str] = ..., sampling: _Optional[_Union[Sampling, _Mapping]] = ..., chunking: _Optional[_Union[Chunking, _Mapping]] = ..., output: _Optional[_Union[OutputTarget, _Mapping]] = ..., output_format: _Optional[_Union[OutputFormat, str]] = ..., encoding: _Optional[_Union[AudioEncoding, str]] = ..., request_id: _Optional[str] = ..., omit_audio: _Optional[bool] = ..., speed: _Optional[float] = ..., verification: _Optional[_Union[Verification, _Mapping]] = ..., timestamps: _Optional[_Union[Timestamps, str]] = ..., max_result_bytes: _Optional[int] = ...) -> None: ...

class Verification(_message.Message):
    __slots__ = ("mode", "max_wer", "max_attempts")
    MODE_FIELD_NUMBER: _ClassVar[int]
    MAX_WER_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    mode: VerifyMode
    max_wer: float
    max_attempts: int
    def __init__(self, mode: _Optional[_Union[VerifyMode, str]] = ..., max_wer: _Optional[float] = ..., max_attempts: _Optional[int] = ...) -> None: ...

class Voice(_message.Message):
    __slots__ = ("name", "reference")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    reference: ReferenceAudio
    def __init__(self, name: _Optional[str] = ..., reference: _Optional[_Union[ReferenceAudio, _Mapping]] = ...) -> None: ...

class ReferenceAudio(_message.Message):
    __slots__ = ("audio", "transcript", "name")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    audio: bytes
    transcript: str
    name: str
    def __init__(self, audio: _Optional[bytes] = ..., transcript: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class Sampling(_message.Message):
    __slots__ = ("temperature", "top_k", "top_p", "max_new_tokens", "seed", "ras_win_len", "ras_win_max_num_repeat")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    RAS_WIN_LEN_FIELD_NUMBER: _ClassVar[int]
    RAS_WIN_MAX_NUM_REPEAT_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    top_k: int
    top_p: float
    max_new_tokens: int
    seed: int
    ras_win_len: int
    ras_win_max_num_repeat: int
    def __init__(self, temperature: _Optional[float] = ..., top_k: _Optional[int] = ..., top_p: _Optional[float] = ..., max_new_tokens: _Optional[int] = ..., seed: _Optional[int] = ..., ras_win_len: _Optional[int] = ..., ras_win_max_num_repeat: _Optional[int] = ...) -> None: ...

class Chunking(_message.Message):
    __slots__ = ("method", "max_word_num", "max_num_turns")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    MAX_WORD_NUM_FIELD_NUMBER: _ClassVar[int]
    MAX_NUM_TURNS_FIELD_NUMBER: _ClassVar[int]
    method: ChunkMethod
    max_word_num: int
    max_num_turns: int
    def __init__(self, method: _Optional[_Union[ChunkMethod, str]] = ..., max_word_num: _Optional[int] = ..., max_num_turns: _Optional[int] = ...) -> None: ...

class OutputTarget(_message.Message):
    __slots__ = ("s3_bucket", "s3_key", "overwrite")
    S3_BUCKET_FIELD_NUMBER: _ClassVar[int]
    S3_KEY_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    s3_bucket: str
    s3_key: str
    overwrite: bool
    def __init__(self, s3_bucket: _Optional[str] = ..., s3_key: _Optional[str] = ..., overwrite: _Optional[bool] = ...) -> None: ...

class SpeechEvent(_message.Message):
    __slots__ = ("started", "audio", "progress", "stored", "completed", "segment", "cancelled", "verified")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    started: Started
    audio: AudioChunk
    progress: Progress
    stored: Stored
    completed: Completed
    segment: Segment
    cancelled: Cancelled
    verified: ChunkVerified
    def __init__(self, started: _Optional[_Union[Started, _Mapping]] = ..., audio: _Optional[_Union[AudioChunk, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., stored: _Optional[_Union[Stored, _Mapping]] = ..., completed: _Optional[_Union[Completed, _Mapping]] = ..., segment: _Optional[_Union[Segment, _Mapping]] = ..., cancelled: _Optional[_Union[Cancelled, _Mapping]] = ..., verified: _Optional[_Union[ChunkVerified, _Mapping]] = ...) -> None: ...

class ChunkVerified(_message.Message):
    __slots__ = ("chunk", "text", "transcript", "wer", "attempts", "kept", "passed", "words", "error")
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    WER_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    KEPT_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    chunk: int
    text: str
    transcript: str
    wer: float
    attempts: int
    kept: int
    passed: bool
    words: _containers.RepeatedCompositeFieldContainer[WordTiming]
    error: str
    def __init__(self, chunk: _Optional[int] = ..., text: _Optional[str] = ..., transcript: _Optional[str] = ..., wer: _Optional[float] = ..., attempts: _Optional[int] = ..., kept: _Optional[int] = ..., passed: _Optional[bool] = ..., words: _Optional[_Iterable[_Union[WordTiming, _Mapping]]] = ..., error: _Optional[str] = ...) -> None: ...

class WordTiming(_message.Message):
    __slots__ = ("word", "start", "end")
    WORD_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    word: str
    start: float
    end: float
    def __init__(self, word: _Optional[str] = ..., start: _Optional[float] = ..., end: _Optional[float] = ...) -> None: ...

class TextInput(_message.Message):
    __slots__ = ("config", "text", "flush", "done", "cancel")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FLUSH_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    config: SpeechRequest
    text: str
    flush: Flush
    done: Done
    cancel: Cancel
    def __init__(self, config: _Optional[_Union[SpeechRequest, _Mapping]] = ..., text: _Optional[str] = ..., flush: _Optional[_Union[Flush, _Mapping]] = ..., done: _Optional[_Union[Done, _Mapping]] = ..., cancel: _Optional[_Union[Cancel, _Mapping]] = ...) -> None: ...

class Flush(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Done(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Cancel(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Segment(_message.Message):
    __slots__ = ("index", "text", "done", "audio_start_ms", "audio_end_ms", "text_to_audio_ms")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    AUDIO_START_MS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_END_MS_FIELD_NUMBER: _ClassVar[int]
    TEXT_TO_AUDIO_MS_FIELD_NUMBER: _ClassVar[int]
    index: int
    text: str
    done: bool
    audio_start_ms: float
    audio_end_ms: float
    text_to_audio_ms: float
    def __init__(self, index: _Optional[int] = ..., text: _Optional[str] = ..., done: _Optional[bool] = ..., audio_start_ms: _Optional[float] = ..., audio_end_ms: _Optional[float] = ..., text_to_audio_ms: _Optional[float] = ...) -> None: ...

class Cancelled(_message.Message):
    __slots__ = ("index", "audio_end_ms", "dropped_text")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    AUDIO_END_MS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_TEXT_FIELD_NUMBER: _ClassVar[int]
    index: int
    audio_end_ms: float
    dropped_text: str
    def __init__(self, index: _Optional[int] = ..., audio_end_ms: _Optional[float] = ..., dropped_text: _Optional[str] = ...) -> None: ...

class Started(_message.Message):
    __slots__ = ("request_id", "sample_rate", "channels", "encoding", "voices")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    VOICES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    sample_rate: int
    channels: int
    encoding: AudioEncoding
    voices: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, request_id: _Optional[str] = ..., sample_rate: _Optional[int] = ..., channels: _Optional[int] = ..., encoding: _Optional[_Union[AudioEncoding, str]] = ..., voices: _Optional[_Iterable[str]] = ...) -> None: ...

class AudioChunk(_message.Message):
    __slots__ = ("sequence", "frame_index", "num_samples", "data")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    frame_index: int
    num_samples: int
    data: bytes
    def __init__(self, sequence: _Optional[int] = ..., frame_index: _Optional[int] = ..., num_samples: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("frames_done", "chunks_done", "chunks_total")
    FRAMES_DONE_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_DONE_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    frames_done: int
    chunks_done: int
    chunks_total: int
    def __init__(self, frames_done: _Optional[int] = ..., chunks_done: _Optional[int] = ..., chunks_total: _Optional[int] = ...) -> None: ...

class Stored(_message.Message):
    __slots__ = ("url", "uri", "bucket", "key", "bytes", "etag", "record_key", "captions_key")
    URL_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    RECORD_KEY_FIELD_NUMBER: _ClassVar[int]
    CAPTIONS_KEY_FIELD_NUMBER: _ClassVar[int]
    url: str
    uri: str
    bucket: str
    key: str
    bytes: int
    etag: str
    record_key: str
    captions_key: str
    def __init__(self, url: _Optional[str] = ..., uri: _Optional[str] = ..., bucket: _Optional[str] = ..., key: _Optional[str] = ..., bytes: _Optional[int] = ..., etag: _Optional[str] = ..., record_key: _Optional[str] = ..., captions_key: _Optional[str] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("queue", "load", "prefill", "decode", "vocode", "upload", "first_audio", "total", "asr")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    PREFILL_FIELD_NUMBER: _ClassVar[int]
    DECODE_FIELD_NUMBER: _ClassVar[int]
    VOCODE_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_FIELD_NUMBER: _ClassVar[int]
    FIRST_AUDIO_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    ASR_FIELD_NUMBER: _ClassVar[int]
    queue: float
    load: float
    prefill: float
    decode: float
    vocode: float
    upload: float
    first_audio: float
    total: float
    asr: float
    def __init__(self, queue: _Optional[float] = ..., load: _Optional[float] = ..., prefill: _Optional[float] = ..., decode: _Optional[float] = ..., vocode: _Optional[float] = ..., upload: _Optional[float] = ..., first_audio: _Optional[float] = ..., total: _Optional[float] = ..., asr: _Optional[float] = ...) -> None: ...

class Completed(_message.Message):
    __slots__ = ("request_id", "duration_seconds", "sample_rate", "timings", "real_time_factor", "frames", "stop_reason", "audio_url", "text_output", "trace_id", "metadata")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    REAL_TIME_FACTOR_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    STOP_REASON_FIELD_NUMBER: _ClassVar[int]
    AUDIO_URL_FIELD_NUMBER: _ClassVar[int]
    TEXT_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    duration_seconds: float
    sample_rate: int
    timings: Timings
    real_time_factor: float
    frames: int
    stop_reason: str
    audio_url: str
    text_output: str
    trace_id: str
    metadata: _struct_pb2.Struct
    def __init__(self, request_id: _Optional[str] = ..., duration_seconds: _Optional[float] = ..., sample_rate: _Optional[int] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., real_time_factor: _Optional[float] = ..., frames: _Optional[int] = ..., stop_reason: _Optional[str] = ..., audio_url: _Optional[str] = ..., text_output: _Optional[str] = ..., trace_id: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class SpeechResult(_message.Message):
    __slots__ = ("audio", "format", "content_type", "completed", "stored")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    audio: bytes
    format: str
    content_type: str
    completed: Completed
    stored: Stored
    def __init__(self, audio: _Optional[bytes] = ..., format: _Optional[str] = ..., content_type: _Optional[str] = ..., completed: _Optional[_Union[Completed, _Mapping]] = ..., stored: _Optional[_Union[Stored, _Mapping]] = ...) -> None: ...

class ListVoicesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VoiceInfo(_message.Message):
    __slots__ = ("name", "transcript", "duration_seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    transcript: str
    duration_seconds: float
    def __init__(self, name: _Optional[str] = ..., transcript: _Optional[str] = ..., duration_seconds: _Optional[float] = ...) -> None: ...

class ListVoicesResponse(_message.Message):
    __slots__ = ("voices",)
    VOICES_FIELD_NUMBER: _ClassVar[int]
    voices: _containers.RepeatedCompositeFieldContainer[VoiceInfo]
    def __init__(self, voices: _Optional[_Iterable[_Union[VoiceInfo, _Mapping]]] = ...) -> None: ...
