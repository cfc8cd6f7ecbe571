"""The commands that put model files in place: `demo-model`, `demo-asr`, `convert`, `download`
(`--asr`: the Whisper model of the ASR pass) and `quickstart`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from app.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, _add_request_arguments, cmd_synth
from app.container import Container, resolve_model_paths, volume_paths

ASR_REPO = "openai/whisper-large-v3-turbo"  # 809M parameters: 1.6 GB in bf16, the fastest large Whisper


def cmd_demo_model(args: argparse.Namespace, container: Container) -> int:
    from boson_multimodal.demo import WARNING, write_demo_bundle

    paths = write_demo_bundle(args.dir, seed=args.seed)
    size = sum(f.stat().st_size for f in paths.root.rglob("*") if f.is_file())
    print(json.dumps({"model_path": str(paths.root), "bytes": size,
                      "voices": sorted(p.stem for p in paths.voices.glob("*.txt"))}))
    print(WARNING + f"Use it: export MODEL_PATH={paths.root}", file=sys.stderr)
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

    if args.asr is not None:
        return _download_asr(args, container)
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
    container.model_paths.override(providers.Object(paths))  # synth says when it is the demo bundle
    if settings.engine == "higgs" and not paths.is_demo:
        import torch

        if (settings.device or ("cuda" if torch.cuda.is_available() else "cpu")) == "cpu":
            print("no GPU: generating on the CPU in float32, which for the 5.8B-parameter model takes minutes "
                  "per second of audio", file=sys.stderr)
    if args.voice and not (paths.voices / f"{args.voice}.txt").is_file():
        print(f"voice {args.voice!r} is not in {paths.voices}: the model picks a voice", file=sys.stderr)
        args.voice = None
    return cmd_synth(args, container)


def cmd_demo_asr(args: argparse.Namespace, container: Container) -> int:
    from adapters.whisper.demo import write_demo_asr

    path = write_demo_asr(args.dir, seed=args.seed)
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    print(json.dumps({"asr_model": str(path), "bytes": size}))
    print("This is a DEMO Whisper with RANDOM weights: what it hears is nonsense. Use it with "
          f"HIGGS_ASR_MODEL={path} to try the ASR pass; for real transcripts set HIGGS_ASR_MODEL="
          f"{ASR_REPO} and fetch it with `higgs-tts download --asr`.", file=sys.stderr)
    return EXIT_OK


def _download_asr(args: argparse.Namespace, container: Container) -> int:
    """`download --asr [REPO]`: the Whisper model into MODEL_PATH/<repo> (or --to DIR/<repo>),
    or into a hub cache (--cache), where HIGGS_ASR_MODEL=<repo> finds it."""
    from boson_multimodal.hub import DownloadError, download, plan

    settings = container.settings()
    repo = args.asr or settings.asr_model or ASR_REPO
    started = time.monotonic()
    try:
        plans = plan({"asr": args.revision}, repos={"asr": repo})
        for p in plans:
            print(f"{p.repo}@{p.revision[:12]}: {p.files} files, {p.bytes / 1e9:.2f} GB", file=sys.stderr, flush=True)
        if args.cache is not None:
            where = download(plans, cache_dir=Path(args.cache) if args.cache else None)
        else:
            where = download(plans, volume=volume_paths(settings, args.to))
    except DownloadError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT if error.refused else EXIT_FAILED
    print(json.dumps({"asr": {"repo": repo, "revision": plans[0].revision, "path": str(where["asr"]),
                              "bytes": plans[0].bytes}, "seconds": round(time.monotonic() - started, 2)}))
    return EXIT_OK


def register(commands: argparse._SubParsersAction, servers: argparse._SubParsersAction) -> None:
    demo_asr = commands.add_parser("demo-asr", help="write a tiny random-weight Whisper (a few MB) for the ASR pass")
    demo_asr.add_argument("dir", type=Path, help="where to write it; then HIGGS_ASR_MODEL=DIR")
    demo_asr.add_argument("--seed", type=int, default=0, help="of the random weights")
    demo_asr.set_defaults(handler=cmd_demo_asr)
    demo = commands.add_parser("demo-model", help="write a tiny random-weight model bundle (a few MB)")
    demo.add_argument("dir", type=Path, help="where to write it; then MODEL_PATH=DIR")
    demo.add_argument("--seed", type=int, default=0, help="of the random weights")
    demo.set_defaults(handler=cmd_demo_model)

    convert = commands.add_parser(
        "convert", help="write a model volume in the transformers layout (converts the original bosonai one)")
    convert.add_argument("src", type=Path, help="a MODEL_PATH in either layout")
    convert.add_argument("dst", type=Path, help="a new directory: the converted MODEL_PATH")
    convert.set_defaults(handler=cmd_convert)

    quick = commands.add_parser("quickstart", help="synth with the real weights, downloading them when missing "
                                              "(the demo bundle only when the hub cannot be reached): `make run`")
    _add_request_arguments(quick)
    quick.add_argument("--out", type=Path, default=Path("out/hello.wav"), help="where to write the audio")
    quick.set_defaults(handler=cmd_quickstart)

    fetch = commands.add_parser("download", help="fetch the weights from the Hugging Face hub (HF_TOKEN, HF_ENDPOINT)")
    fetch.add_argument("--to", type=Path, help="volume to fill (default: MODEL_PATH)")
    fetch.add_argument("--cache", nargs="?", const="", default=None,
                       help="into a hub cache instead (default: HF_HUB_CACHE / HF_HOME), for MODEL_PATH=hf://...")
    fetch.add_argument("--revision", help="generation model revision (default: main, or MODEL_PATH's @REVISION)")
    fetch.add_argument("--tokenizer-revision", help="audio tokenizer revision (default: main)")
    fetch.add_argument("--asr", nargs="?", const="", default=None, metavar="REPO",
                       help=f"fetch the ASR model instead (default: $HIGGS_ASR_MODEL, else {ASR_REPO}) into "
                            "MODEL_PATH/<repo>, where HIGGS_ASR_MODEL=<repo> finds it"),
    fetch.set_defaults(handler=cmd_download)
