"""`higgs-tts`: the command line. Subcommands register themselves in `COMMANDS`."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from app.container import Container, build_container, resolve_model_paths, volume_paths
from app.settings import limit_cpu_threads
from core.domain.errors import DomainError, ErrorType
from core.domain.events import AudioChunk, AudioStored, Progress, SpeechCompleted
from core.domain.request import (
    Chunking,
    ChunkMethod,
    InlineVoice,
    OutputFormat,
    OutputTarget,
    Sampling,
    SpeechRequest,
    parse_voice_list,
)
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
    p.add_argument("--temperature", type=float, default=defaults.temperature)
    p.add_argument("--top-k", type=int, default=defaults.top_k)
    p.add_argument("--top-p", type=float, default=defaults.top_p)
    p.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens,
                   help="upper bound on audio frames (25 per second)")
    p.add_argument("--seed", type=int, default=None, help="same seed, same audio")
    p.add_argument("--ras-win-len", type=int, default=defaults.ras_win_len,
                   help="repetition-aware sampling window in frames (0 turns it off)")
    p.add_argument("--ras-win-max-num-repeat", type=int, default=defaults.ras_win_max_num_repeat)
    p.add_argument("--chunk-method", choices=[m.value for m in ChunkMethod], default=chunking.method.value,
                   help="auto (default): one chunk when the text fits, else split at sentences")
    p.add_argument("--chunk-max-word-num", type=int, default=chunking.max_word_num)
    p.add_argument("--chunk-max-num-turns", type=int, default=chunking.max_num_turns)
    p.add_argument("--speed", type=float, default=1.0, help="pace, 0.25 to 4.0 (time-stretched, pitch kept)")
    p.add_argument("--format", choices=[f.value for f in OutputFormat], default="wav")
    p.add_argument("--bucket", help="also store the audio and its event record in this bucket")
    p.add_argument("--key", help="object key (default: {prefix}/{yyyy}/{mm}/{dd}/{request_id}.wav)")
    p.add_argument("--overwrite", action="store_true", help="replace an object already at --key")


def request_from_args(args: argparse.Namespace) -> SpeechRequest:
    text = args.text if args.text is not None else args.text_file.read_text(encoding="utf-8")
    voices: tuple = ()
    if args.voice:
        voices = parse_voice_list(args.voice)
    if args.ref_audio:
        voices = voices + (InlineVoice(args.ref_audio.read_bytes(), args.ref_text or ""),)
    output = OutputTarget(args.bucket, args.key, args.overwrite) if (args.bucket or args.key) else None
    return SpeechRequest(
        text=text,
        voices=voices,
        scene_prompt=args.scene,
        sampling=Sampling(
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            max_new_tokens=args.max_new_tokens,
            seed=args.seed,
            ras_win_len=args.ras_win_len,
            ras_win_max_num_repeat=args.ras_win_max_num_repeat,
        ),
        chunking=Chunking(args.chunk_method, args.chunk_max_word_num, args.chunk_max_num_turns),
        speed=args.speed,
        output=output,
        output_format=args.format,
    )


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
    warn_if_demo(container)
    bar = ProgressBar()
    outcome = Outcome()
    try:
        for event in container.speech_service().speak(request, received_at=time.monotonic()):
            if isinstance(event, (Progress, AudioChunk)):
                bar.update(event)
            outcome.add(event)
        completed = outcome.result()
    except DomainError as error:
        bar.close(f"failed: {error.code}: {error.message}")
        return _fail(error)
    out = args.out or Path(f"{request.request_id}.{completed.audio.format}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(completed.audio.data)
    bar.close(f"done: {completed.duration_seconds:.2f}s of audio in {completed.timings.total:.2f}s "
              f"(RTF {completed.real_time_factor:.3f}, stopped: {completed.stop_reason}) -> {out}")
    print(json.dumps(_summary(completed, outcome.stored, out), default=str))
    return EXIT_OK


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
        "metadata": completed.metadata,
    }


def cmd_demo_model(args: argparse.Namespace, container: Container) -> int:
    from boson_multimodal.demo import WARNING, write_demo_bundle

    paths = write_demo_bundle(args.dir, seed=args.seed)
    size = sum(f.stat().st_size for f in paths.root.rglob("*") if f.is_file())
    print(json.dumps({"model_path": str(paths.root), "bytes": size,
                      "voices": sorted(p.stem for p in paths.voices.glob("*.txt"))}))
    print(WARNING, file=sys.stderr)
    return EXIT_OK


def cmd_convert(args: argparse.Namespace, container: Container) -> int:
    from boson_multimodal.convert import convert_bundle

    settings = container.settings()
    src, dst = volume_paths(settings, args.src), volume_paths(settings, args.dst)
    if args.src.resolve() == args.dst.resolve():
        print("error: convert into a new directory (DST must differ from SRC)", file=sys.stderr)
        return EXIT_BAD_INPUT
    started = time.monotonic()
    try:
        done = convert_bundle(src, dst, report=lambda message: print(message, file=sys.stderr, flush=True))
    except (OSError, ValueError) as error:  # missing files, unsupported variants, a full DST
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps({"src": str(args.src), "dst": str(args.dst), **done,
                      "seconds": round(time.monotonic() - started, 2)}))
    return EXIT_OK


def _fetch(revisions: dict[str, str | None], volume=None, cache: Path | None = None):
    """Plan (printing what will be fetched), then download: the plans and where each went.
    Raises DownloadError."""
    from boson_multimodal.hub import download, plan
    from boson_multimodal.voices import install_sample_voices

    plans = plan(revisions)
    for p in plans:
        print(f"{p.repo}@{p.revision[:12]}: {p.files} files, {p.bytes / 1e9:.2f} GB", file=sys.stderr, flush=True)
    where = download(plans, volume=volume, cache_dir=cache)
    if volume is not None:  # a fresh volume gets voices to clone (never over the ones it has)
        written = install_sample_voices(volume.voices)
        if written:
            print(f"sample voices in {volume.voices}: {', '.join(written)}", file=sys.stderr, flush=True)
    return plans, where


def cmd_download(args: argparse.Namespace, container: Container) -> int:
    """The generation model and the audio tokenizer from the hub, into the MODEL_PATH layout
    (or --to DIR), or into a hub cache (--cache). Says what it will fetch before it starts."""
    from boson_multimodal.hub import DownloadError

    settings = container.settings()
    revisions = {"generation": args.revision or settings.hub_revision,
                 "tokenizer": args.tokenizer_revision or settings.tokenizer_revision}
    started = time.monotonic()
    try:
        if args.cache is not None:
            plans, where = _fetch(revisions, cache=Path(args.cache) if args.cache else None)
        else:
            plans, where = _fetch(revisions, volume=volume_paths(settings, args.to))
    except DownloadError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT if error.refused else EXIT_FAILED
    print(json.dumps({p.component: {"repo": p.repo, "revision": p.revision, "path": str(where[p.component]),
                                    "bytes": p.bytes} for p in plans}
                     | {"seconds": round(time.monotonic() - started, 2)}))
    return EXIT_OK


def cmd_quickstart(args: argparse.Namespace, container: Container) -> int:
    """What `make run` does: synthesise with the real weights, downloading them first when
    MODEL_PATH has none and the hub answers; the demo bundle only when the hub cannot be
    reached (or HIGGS_DEMO_FALLBACK=1 asks for it), and it says why."""
    from dataclasses import replace

    from dependency_injector import providers

    from boson_multimodal.hub import DownloadError

    settings = container.settings()
    paths = resolve_model_paths(replace(settings, demo_fallback=False))
    if not paths.has_weights():
        reason = "HIGGS_DEMO_FALLBACK=1" if settings.demo_fallback else None
        if reason is None:
            print(f"no weights at {settings.model_path}: downloading them (higgs-tts download)", file=sys.stderr)
            try:
                volume = volume_paths(settings)
                _fetch({"generation": settings.hub_revision, "tokenizer": settings.tokenizer_revision}, volume=volume)
                paths = volume
            except DownloadError as error:
                if error.refused:
                    print(f"error: {error}", file=sys.stderr)
                    return EXIT_BAD_INPUT
                reason = str(error)
        if reason is not None:
            print(f"falling back to the demo bundle: {reason}", file=sys.stderr)
            paths = resolve_model_paths(replace(settings, demo_fallback=True))
    container.model_paths.override(providers.Object(paths))
    warn_if_demo(container)
    if settings.engine == "higgs" and not paths.is_demo:
        import torch

        if (settings.device or ("cuda" if torch.cuda.is_available() else "cpu")) == "cpu":
            print("no GPU: generating on the CPU in float32, which for the 5.8B-parameter model takes minutes "
                  "per second of audio", file=sys.stderr)
    if args.voice and not (paths.voices / f"{args.voice}.txt").is_file():
        print(f"voice {args.voice!r} is not in {paths.voices}: the model picks a voice", file=sys.stderr)
        args.voice = None
    return cmd_synth(args, container)


def warn_if_demo(container: Container) -> None:
    settings = container.settings()
    if settings.engine == "higgs" and (paths := container.model_paths()).is_demo:
        from boson_multimodal.demo import WARNING

        banner = "!" * 78
        print(f"{banner}\n{WARNING}MODEL_PATH is {settings.model_path}; using {paths.root}\n{banner}",
              file=sys.stderr)


def cmd_voices(args: argparse.Namespace, container: Container) -> int:
    try:
        voices = container.voice_library().list()
    except DomainError as error:
        return _fail(error)
    print(json.dumps([{"name": v.name, "transcript": v.transcript,
                       "duration_seconds": v.duration_seconds} for v in voices]))
    return EXIT_OK


def _fail(error: DomainError) -> int:
    print(json.dumps({"success": False, "error": error.to_dict()}, default=str))
    return EXIT_BAD_INPUT if error.type is ErrorType.VALIDATION else EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="higgs-tts", description="Higgs Audio V2 text-to-speech: voice cloning, streaming."
    )
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (env LOG_LEVEL)")
    sub = parser.add_subparsers(dest="command", required=True)

    synth = sub.add_parser("synth", help="text -> audio file; JSON summary on stdout")
    _add_request_arguments(synth)
    synth.add_argument("--out", type=Path, help="where to write the audio (default <request_id>.wav)")
    synth.set_defaults(handler=cmd_synth)

    voices = sub.add_parser("voices", help="list the voice prompts")
    voices.set_defaults(handler=cmd_voices)

    demo = sub.add_parser("demo-model", help="write a tiny random-weight model bundle (a few MB)")
    demo.add_argument("dir", type=Path)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=cmd_demo_model)

    convert = sub.add_parser(
        "convert", help="write a model volume in the transformers layout (converts the original bosonai one)")
    convert.add_argument("src", type=Path, help="a MODEL_PATH in either layout")
    convert.add_argument("dst", type=Path, help="a new directory: the converted MODEL_PATH")
    convert.set_defaults(handler=cmd_convert)

    quick = sub.add_parser("quickstart", help="synth with the real weights, downloading them when missing "
                                              "(the demo bundle only when the hub cannot be reached): `make run`")
    _add_request_arguments(quick)
    quick.add_argument("--out", type=Path, default=Path("out/hello.wav"))
    quick.set_defaults(handler=cmd_quickstart)

    fetch = sub.add_parser("download", help="fetch the weights from the Hugging Face hub (HF_TOKEN, HF_ENDPOINT)")
    fetch.add_argument("--to", type=Path, help="volume to fill (default: MODEL_PATH)")
    fetch.add_argument("--cache", nargs="?", const="", default=None,
                       help="into a hub cache instead (default: HF_HUB_CACHE / HF_HOME), for MODEL_PATH=hf://...")
    fetch.add_argument("--revision", help="generation model revision (default: main, or MODEL_PATH's @REVISION)")
    fetch.add_argument("--tokenizer-revision", help="audio tokenizer revision (default: main)")
    fetch.set_defaults(handler=cmd_download)

    serve = sub.add_parser("serve", help="run a server")
    servers = serve.add_subparsers(dest="server", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub, servers)
    return parser


Handler = Callable[[argparse.Namespace, Container], int]

# Modules that add subcommands: each has `register(commands, serve_commands)` that adds
# argparse parsers whose `handler` default is a Handler.
COMMAND_MODULES: tuple[str, ...] = ("app.grpc_api", "app.runpod_worker", "app.http_api")


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
