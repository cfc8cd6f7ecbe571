"""`higgs-tts`: the command line. Subcommands register themselves in `COMMANDS`."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import threading
import time
from array import array
from pathlib import Path
from typing import Callable

from app.container import Container, build_container
from app.settings import limit_cpu_threads
from core.domain.audio import SAMPLE_RATE, Samples
from core.domain.captions import render
from core.domain.errors import DomainError, ErrorCode, ErrorType
from core.domain.events import AudioChunk, AudioStored, Progress, SpeechCompleted
from core.domain.request import (
    Chunking,
    ChunkMethod,
    InlineVoice,
    OutputFormat,
    Sampling,
    SpeechRequest,
    parse_voice_list,
)
from core.domain.request_fields import FIELDS, assemble, face_names
from core.domain.verification import Word
from core.service.outcome import Outcome

log = logging.getLogger("higgs_tts")
_STDOUT = threading.Lock()


def emit(name: str, **fields) -> None:
    """One event line on stdout (servers report listening, warm, draining, stopped this way):
    written whole, under a lock, so lines from several threads never run together."""
    line = json.dumps({"event": name, **fields}, default=str) + "\n"
    with _STDOUT:
        sys.stdout.write(line)
        sys.stdout.flush()

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _add_request_arguments(p: argparse.ArgumentParser) -> None:
    defaults = Sampling()
    chunking = Chunking()
    text = p.add_mutually_exclusive_group(required=True)
    text.add_argument("--text", help="what to say; [SPEAKER0]/[SPEAKER1] tags switch speakers")
    text.add_argument("--text-file", type=Path, help="read the text from a file")
    p.add_argument("--voice", help="voice prompt name(s), comma-separated, one per speaker")
    p.add_argument("--ref-audio", type=Path, help="reference clip to clone (WAV/FLAC/OGG)")
    p.add_argument("--ref-text", help="transcript of --ref-audio")
    p.add_argument("--scene", help="scene description that steers the tone")
    p.add_argument("--temperature", type=float, default=defaults.temperature, help="(0, 2]")
    p.add_argument("--top-k", type=int, default=defaults.top_k, help="1..1024")
    p.add_argument("--top-p", type=float, default=defaults.top_p, help="(0, 1]")
    p.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens,
                   help="decode steps per text chunk: at most this less 9 audio frames (25 a second)")
    p.add_argument("--seed", type=int, default=None, help="same seed, same audio")
    p.add_argument("--ras-win-len", type=int, default=defaults.ras_win_len,
                   help="repetition-aware sampling window in frames (0 turns it off)")
    p.add_argument("--ras-win-max-num-repeat", type=int, default=defaults.ras_win_max_num_repeat, help="1..256")
    p.add_argument("--chunk-method", default=chunking.method.value,
                   help="auto: one chunk when the text fits, else split at sentences; "
                        + ", ".join(m.value for m in ChunkMethod if m is not ChunkMethod.AUTO))
    p.add_argument("--chunk-max-word-num", type=int, default=chunking.max_word_num, help="1..1000 (word chunks)")
    p.add_argument("--chunk-max-num-turns", type=int, default=chunking.max_num_turns, help="1..100 (speaker chunks)")
    p.add_argument("--speed", type=float, default=1.0, help="pace, 0.25 to 4.0 (time-stretched, pitch kept)")
    p.add_argument("--format", default="wav",
                   help="the audio file's format: " + ", ".join(f.value for f in OutputFormat))
    p.add_argument("--bucket", help="also store the audio and its event record in this bucket")
    p.add_argument("--key", help="object key (default: {prefix}/{yyyy}/{mm}/{dd}/{request_id}.{format})")
    p.add_argument("--overwrite", action="store_true", help="replace an object already at --key")
    asr = p.add_argument_group("the ASR pass (needs HIGGS_ASR_MODEL)")
    asr.add_argument("--verify", nargs="?", const="on",
                     help="off, on or report: transcribe each text chunk; `--verify` generates a chunk again "
                          "when its word error rate "
                          "is above --max-wer; `--verify report` only reports (default: $HIGGS_VERIFY, off)")
    asr.add_argument("--max-wer", type=float, help="0..1 (default: $HIGGS_MAX_WER, 0.25)")
    asr.add_argument("--max-attempts", type=int, help="generations of one chunk at most, 1..5 "
                                                      "(default: $HIGGS_VERIFY_ATTEMPTS, 2)")
    asr.add_argument("--timestamps", default="none",
                     help="none, or word: the words heard with their start and end seconds, in the summary's "
                          "`words`")


# the request's fields as the flags name them: an error about `s3_bucket` names `--bucket`
FLAGS = {name: "--" + dest.replace("_", "-") for name, dest in face_names("cli").items()}


def request_from_args(args: argparse.Namespace) -> SpeechRequest:
    text = args.text if args.text is not None else args.text_file.read_text(encoding="utf-8")
    voices: tuple = ()
    if args.voice:
        voices = parse_voice_list(args.voice)
    if args.ref_audio:
        try:
            voices = voices + (InlineVoice(args.ref_audio.read_bytes(), args.ref_text or ""),)
        except DomainError as error:  # named as the flags name them
            raise error.renamed({"ref_audio_base64": "--ref-audio", "ref_audio_transcript": "--ref-text"}) from None
    values = {f.name: value for f in FIELDS if (dest := f.on("cli")) is not None
              and (value := getattr(args, dest, None)) is not None}
    values["transcript"] = text
    if getattr(args, "captions", None) is not None:
        values["timestamps"] = "word"
    return assemble(values, voices, FLAGS)


class ProgressBar:
    """One status line on stderr, redrawn in place on a terminal, printed sparsely otherwise."""

    def __init__(self, stream=sys.stderr, min_interval: float = 0.5) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.min_interval = min_interval if self.tty else 2.0
        self.started = time.monotonic()
        self.last = 0.0
        self.audio_seconds = 0.0

    def update(self, event: Progress | AudioChunk) -> None:
        if isinstance(event, AudioChunk):
            self.audio_seconds += event.duration_seconds
            return
        now = time.monotonic()
        if now - self.last < self.min_interval:
            return
        self.last = now
        elapsed = now - self.started
        line = (
            f"generating: {event.frames_done} frames, {self.audio_seconds:.1f}s audio, "
            f"text chunk {min(event.chunks_done + 1, event.chunks_total)}/{event.chunks_total}, "
            f"{elapsed:.1f}s"
        )
        self.stream.write(("\r" + line + "\x1b[K") if self.tty else line + "\n")
        self.stream.flush()

    def close(self, message: str) -> None:
        self.stream.write(("\r" if self.tty else "") + message + ("\x1b[K\n" if self.tty else "\n"))
        self.stream.flush()


def cmd_synth(args: argparse.Namespace, container: Container) -> int:
    try:
        request = request_from_args(args)
    except DomainError as error:
        return _fail(error)
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if (refused := missing_weights(container) or check_target(request, container)) is not None:
        return _fail(refused)
    warn_if_demo(container)
    bar = ProgressBar()
    outcome = Outcome()
    heard: Samples = array("f")  # kept: a failed upload must not lose the audio
    try:
        for event in container.speech_service().speak(request, received_at=time.monotonic()):
            if isinstance(event, (Progress, AudioChunk)):
                bar.update(event)
                heard.extend(event.samples if isinstance(event, AudioChunk) else ())
            outcome.add(event)
        completed = outcome.result()
    except DomainError as error:
        bar.close(f"failed: {error.code}: {error.message}")
        _after_failure(error, container, request, args, heard)
        return _fail(error)
    out = args.out or Path(f"{request.request_id}.{completed.audio.format}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(completed.audio.data)
    if getattr(args, "captions", None) is not None:  # synth's own flag (quickstart shares this command)
        _write_captions(args.captions, completed)
    bar.close(f"done: {completed.duration_seconds:.2f}s of audio in {completed.timings.total:.2f}s "
              f"(RTF {completed.real_time_factor:.3f}, stopped: {completed.stop_reason}) -> {out}")
    print(json.dumps(_summary(completed, outcome.stored, out), default=str))
    return EXIT_OK


def check_target(request: SpeechRequest, container: Container) -> DomainError | None:
    """Where the audio is to be stored, checked before it is generated: the bucket answers to
    these credentials (S3), or, with no S3 settings, it is said that the bucket is a folder."""
    settings = container.settings()
    bucket = (request.output.bucket if request.output else None) or settings.s3_bucket
    if bucket is None or settings.store_kind == "none":
        return None
    if settings.store_kind == "local":
        print(f"no S3 settings (HIGGS_STORE={settings.store}): {bucket} is a folder under {settings.output_dir}",
              file=sys.stderr)
        return None
    try:
        container.object_store().validate_bucket_access(bucket)
    except DomainError as error:
        return error
    return None


def _after_failure(error: DomainError, container: Container, request: SpeechRequest, args: argparse.Namespace,
                   heard: Samples) -> None:
    """What the user can do about a failed synth, on stderr; audio that was generated before
    its upload failed is written to --out all the same."""
    if error.code == ErrorCode.UNKNOWN_VOICE.value and container.settings().engine == "higgs":
        print(f"voices are read from {container.model_paths().voices}", file=sys.stderr)
    if error.type is ErrorType.STORAGE and heard:
        from adapters.soundfile import SoundfileEncoder

        out = args.out or Path(f"{request.request_id}.{request.output_format.value}")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(SoundfileEncoder().encode(heard, SAMPLE_RATE, request.output_format.value).data)
        print(f"storing failed; the audio is in {out}", file=sys.stderr)


def _write_captions(path: Path, completed: SpeechCompleted) -> None:
    """SubRip or WebVTT by the file's extension, from the summary's words."""
    words = [Word.from_dict(w) for w in completed.metadata.get("words", ())]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render("srt" if path.suffix.lower() == ".srt" else "vtt", words, completed.duration_seconds),
                    encoding="utf-8")


def _summary(completed: SpeechCompleted, stored: AudioStored | None, out: Path) -> dict:
    return {
        "success": True,
        "request_id": completed.request_id,
        "out": str(out),
        "audio_url": completed.audio_url,
        "s3_key": stored.key if stored else None,
        "duration_seconds": round(completed.duration_seconds, 4),
        "sample_rate": completed.sample_rate,
        "frames": completed.frames,
        "stop_reason": completed.stop_reason,
        "real_time_factor": round(completed.real_time_factor, 4),
        "timings": completed.timings.to_dict(),
        **{k: completed.metadata[k] for k in ("verification", "words") if k in completed.metadata},
        "metadata": completed.metadata,
    }


def warn_if_demo(container: Container) -> None:
    settings = container.settings()
    if settings.engine == "higgs" and (paths := container.model_paths()).is_demo:
        from boson_multimodal.demo import WARNING

        banner = "!" * 78
        print(f"{banner}\n{WARNING}MODEL_PATH is {settings.model_path}; using {paths.root}\n{banner}",
              file=sys.stderr)


def missing_weights(container: Container) -> DomainError | None:
    """MODEL_PATH without the weights, said before any work, with every path that was searched
    (on stderr: this is the user's own machine), and what to do about it."""
    settings = container.settings()
    if settings.engine != "higgs" or (paths := container.model_paths()).has_weights():
        return None
    print(f"error: no model weights at MODEL_PATH={settings.model_path} (looked for {paths.generation} and "
          f"{paths.tokenizer}, then the hub caches).\n  Try it without weights: higgs-tts demo-model /tmp/demo && "
          "export MODEL_PATH=/tmp/demo\n  Or fetch them: higgs-tts download", file=sys.stderr)
    return DomainError(ErrorType.MODEL, ErrorCode.MODEL_NOT_FOUND, "the model weights are not at MODEL_PATH",
                       {"model_path": str(settings.model_path)})


def cmd_voices(args: argparse.Namespace, container: Container) -> int:
    if (missing := missing_weights(container)) is not None:
        return _fail(missing)
    try:
        voices = container.voice_library().list()
    except DomainError as error:
        return _fail(error)
    if not voices and container.settings().engine == "higgs" and not container.settings().voices_s3_uri:
        print(f"no voice prompts in {container.model_paths().voices}", file=sys.stderr)
    print(json.dumps([{"name": v.name, "transcript": v.transcript,
                       "duration_seconds": v.duration_seconds} for v in voices]))
    return EXIT_OK


def _fail(error: DomainError) -> int:
    print(json.dumps({"success": False, "error": error.to_dict()}, default=str))
    return EXIT_BAD_INPUT if error.type is ErrorType.VALIDATION else EXIT_FAILED


class _Defaults(argparse.HelpFormatter):
    """Each option's default in its help, when it has one worth saying and the help does not."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or any(action.default is v for v in (None, False, argparse.SUPPRESS))
                or "default" in text):  # `is`: a default of 0 is worth saying (0 == False)
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _Defaults)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="higgs-tts", description="Higgs Audio V2 text-to-speech: voice cloning, streaming."
    )
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (env LOG_LEVEL)")
    sub = parser.add_subparsers(dest="command", required=True)

    synth = sub.add_parser("synth", help="text -> audio file; JSON summary on stdout")
    _add_request_arguments(synth)
    synth.add_argument("--out", type=Path, help="where to write the audio (default: <request_id>.<format>)")
    synth.add_argument("--captions", type=Path,
                       help="also write captions here: .srt (SubRip) or .vtt (WebVTT); needs --timestamps word")
    synth.set_defaults(handler=cmd_synth)

    voices = sub.add_parser("voices", help="list the voice prompts")
    voices.set_defaults(handler=cmd_voices)

    serve = sub.add_parser("serve", help="run a server")
    servers = serve.add_subparsers(dest="server", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub, servers)
    return parser


Handler = Callable[[argparse.Namespace, Container], int]

# Modules that add subcommands: each has `register(commands, serve_commands)` that adds
# argparse parsers whose `handler` default is a Handler.
COMMAND_MODULES: tuple[str, ...] = ("app.model_commands", "app.grpc_api", "app.runpod_worker", "app.http_api")


def main(argv: list[str] | None = None, container: Container | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        container = container or build_container()
        settings = container.settings()
    except ValueError as error:  # a bad environment variable
        print(f"configuration error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    limit_cpu_threads(settings)  # before anything imports torch
    logging.basicConfig(
        level=(args.log_level or settings.log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from app.telemetry import install_tracer_provider

    install_tracer_provider(container.tracer_provider())
    try:
        return args.handler(args, container)
    finally:
        container.tracer_provider().shutdown()


if __name__ == "__main__":
    sys.exit(main())
