"""Requests and audio-seconds per second through nginx in front of 1, 2 and 3 replicas (real
`serve http --grpc-port` processes on a demo model, one SeaweedFS, tools/nginx_conf.py), with the
same closed-loop load: `--clients` callers, each sending its next request when the last one
ends, half over HTTP (the OpenAI client) and half over gRPC (the project's service config).

    .venv/bin/python bench/replicas.py --replicas 1,2,3 --requests 48 --clients 6

One JSON line per replica count, then a table. Every replica gets HIGGS_CPU_THREADS=1: on a
machine with fewer cores than replicas they share the cores, and the ratio between the rows,
not their absolute value, is what the run says."""

from __future__ import annotations

import argparse
import io
import itertools
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
import openai  # noqa: E402
import soundfile  # noqa: E402

from adapters.grpc.client import channel_options  # noqa: E402
from higgs_tts.v1 import speech_pb2 as pb  # noqa: E402
from higgs_tts.v1 import speech_pb2_grpc as pb_grpc  # noqa: E402
from tests.ending_bundle import write_ending_bundle  # noqa: E402
from tests.replicas import Nginx, ReplicaProcess, replica_env  # noqa: E402
from tests.seaweed import SeaweedS3  # noqa: E402


def run_load(nginx: Nginx, requests: int, clients: int, tokens: int) -> dict:
    client = openai.OpenAI(base_url=nginx.base + "/v1", api_key="unused", timeout=300)
    channel = grpc.insecure_channel(nginx.grpc_target, options=channel_options())
    stub = pb_grpc.SpeechServiceStub(channel)
    seeds = itertools.count(1)

    def one(i: int) -> float:
        seed = next(seeds)
        text = f"Benchmark sentence number {seed}, spoken by one of the replicas."
        if i % 2 == 0:
            audio = client.audio.speech.create(model="tts-1", voice="belinda", input=text, response_format="wav",
                                               extra_body={"seed": seed, "max_new_tokens": tokens})
            samples, rate = soundfile.read(io.BytesIO(audio.content))
            return len(samples) / rate
        message = pb.SpeechRequest(text=text, voices=[pb.Voice(name="belinda")], omit_audio=True,
                                   sampling=pb.Sampling(seed=seed, max_new_tokens=tokens))
        return stub.Synthesize(message, timeout=300).completed.duration_seconds

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        audio = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - started
    channel.close()
    return {"requests": requests, "seconds": round(wall, 2), "requests_per_s": round(requests / wall, 3),
            "audio_s_per_s": round(sum(audio) / wall, 3)}


def measure(count: int, root: Path, env: dict, args) -> dict:
    replicas = [ReplicaProcess(root / f"n{count}", f"r{i}", env) for i in range(count)]
    nginx = Nginx(root / f"nginx{count}")
    try:
        for replica in replicas:
            replica.wait_ready()
        nginx.start([r.replica for r in replicas])
        run_load(nginx, max(args.clients, 4), args.clients, args.tokens)  # warm every replica's path
        before = [r.served() for r in replicas]
        row = run_load(nginx, args.requests, args.clients, args.tokens)
        row["per_replica"] = [int(r.served() - b) for r, b in zip(replicas, before)]
        return {"replicas": count, **row}
    finally:
        nginx.stop()
        for replica in replicas:
            replica.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", default="1,2,3")
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=60, help="max_new_tokens of each request")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bundle = write_ending_bundle(root / "bundle", eos_rate=1e-6)
        (root / "s3").mkdir()
        s3 = SeaweedS3(root / "s3").start()
        try:
            s3.client().create_bucket(Bucket="bench")
            for clip in sorted((bundle.root / "voice_prompts").iterdir()):
                s3.client().put_object(Bucket="bench", Key=f"voices/{clip.name}", Body=clip.read_bytes())
            env = replica_env(bundle.root, s3.endpoint, "bench", HIGGS_RESULT_CACHE="off")
            rows = []
            for count in (int(c) for c in args.replicas.split(",")):
                rows.append(measure(count, root, env, args))
                print(json.dumps(rows[-1]), flush=True)
        finally:
            s3.stop()
    base = rows[0]
    print("\n| replicas | requests/s | audio s/s | vs first row | requests per replica |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['replicas']} | {row['requests_per_s']:.2f} | {row['audio_s_per_s']:.1f} | "
              f"{row['requests_per_s'] / base['requests_per_s']:.2f}x | {row['per_replica']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
