"""Three replicas behave as one service: real `serve http --grpc-port` processes (a demo model that
ends its audio), one real S3 server for voices, audio and the result cache, and Debian's nginx in
front (tools/nginx_conf.py), driven through nginx only, with the official OpenAI client over HTTP
and the project's gRPC client (its service config) over gRPC."""

from __future__ import annotations

import io
import itertools
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx
import numpy as np
import openai
import pytest
import soundfile

from adapters.grpc.client import channel_options
from adapters.grpc.status import error_from_rpc
from higgs_tts.v1 import speech_pb2 as pb
from higgs_tts.v1 import speech_pb2_grpc as pb_grpc
from tests.ending_bundle import write_ending_bundle
from tests.replicas import Nginx, ReplicaProcess, replica_env

pytestmark = pytest.mark.slow
KINDS = ("http", "http-stream", "grpc-stream", "grpc-unary")
_seeds = itertools.count(1000)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A demo model whose end code is all but never drawn (one in 10^6 per codebook and frame):
    every request runs to its max_new_tokens, and none ends before its first audio (which
    fails the request: INFERENCE_FAILED), whichever replica and batch it decodes in."""
    return write_ending_bundle(tmp_path_factory.mktemp("ending"), eos_rate=1e-6)


@pytest.fixture(scope="module")
def bucket(seaweed, bundle):
    """The shared bucket, its voice library seeded with the bundle's voices (as an operator does)."""
    name = "replicas"
    client = seaweed.client()
    client.create_bucket(Bucket=name)
    for clip in sorted((bundle.root / "voice_prompts").iterdir()):
        client.put_object(Bucket=name, Key=f"voices/{clip.name}", Body=clip.read_bytes())
    return name


class Cluster:
    def __init__(self, root, env):
        self.root, self.env = root, env
        self.replicas: list[ReplicaProcess] = []
        self.names = (f"r{i}" for i in itertools.count())
        self.nginx = Nginx(root / "nginx")
        self.client = openai.OpenAI(base_url=self.nginx.base + "/v1", api_key="unused", timeout=120)
        self.channel: grpc.Channel | None = None

    def add(self, wait=True) -> ReplicaProcess:
        replica = ReplicaProcess(self.root, next(self.names), self.env)
        self.replicas.append(replica)
        if wait:
            replica.wait_ready()
        return replica

    def live(self) -> list[ReplicaProcess]:
        return [r for r in self.replicas if r.proc.poll() is None]

    def route(self, replicas) -> None:
        self.nginx.reload([r.replica for r in replicas])

    def stub(self) -> pb_grpc.SpeechServiceStub:
        if self.channel is None:
            self.channel = grpc.insecure_channel(self.nginx.grpc_target, options=channel_options())
        return pb_grpc.SpeechServiceStub(self.channel)

    def speak(self, kind: str, voice: str = "belinda") -> tuple[str, bool, str]:
        """One request through nginx: (kind, succeeded, what failed)."""
        seed = next(_seeds)
        text = f"Replica check number {seed}, spoken once."
        try:
            if kind == "http":
                audio = self.client.audio.speech.create(model="tts-1", voice=voice, input=text, response_format="wav",
                                                        extra_body={"seed": seed, "max_new_tokens": 60})
                ok = soundfile.read(io.BytesIO(audio.content))[0].size > 0
            elif kind == "http-stream":
                with self.client.audio.speech.with_streaming_response.create(
                        model="tts-1", voice=voice, input=text, response_format="pcm",
                        extra_body={"seed": seed, "max_new_tokens": 60}) as response:
                    ok = len(b"".join(response.iter_bytes())) > 0
            else:
                message = pb.SpeechRequest(text=text, voices=[pb.Voice(name=voice)], omit_audio=True,
                                           sampling=pb.Sampling(seed=seed, max_new_tokens=60))
                if kind == "grpc-stream":
                    events = [m.WhichOneof("event") for m in self.stub().StreamSpeech(message, timeout=120)]
                    ok = events[0] == "started" and events[-1] == "completed" and "audio" in events
                else:
                    ok = self.stub().Synthesize(message, timeout=120).completed.frames > 0
            return kind, ok, "" if ok else "empty"
        except grpc.RpcError as rpc_error:  # as the project's client reports it
            error = error_from_rpc(rpc_error)
            return kind, False, f"grpc {error.code}: {error.message}"
        except Exception as error:  # the OpenAI client's errors, a cut stream
            status = getattr(error, "status_code", None)
            return kind, False, f"{type(error).__name__} {status or ''}: {error}"

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
        self.nginx.stop()
        for replica in self.replicas:
            replica.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, bundle, seaweed, bucket):
    cluster = Cluster(tmp_path_factory.mktemp("replicas"), replica_env(bundle.root, seaweed.endpoint, bucket))
    try:
        for _ in range(3):
            cluster.add(wait=False)
        for replica in cluster.replicas:
            replica.wait_ready()
        cluster.nginx.start([r.replica for r in cluster.replicas])
        yield cluster
    finally:
        cluster.close()


def load(cluster, count, workers=6, kinds=KINDS, during=None):
    """`count` requests of every kind in turn, `workers` at a time; `during()` runs once a
    third have been sent. The results, in order."""
    jobs = [kinds[i % len(kinds)] for i in range(count)]
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(cluster.speak, kind) for kind in jobs[: count // 3]]
        if during is not None:
            time.sleep(0.5)
            during()
        futures += [pool.submit(cluster.speak, kind) for kind in jobs[count // 3:]]
        return [f.result() for f in futures]


def test_sixty_mixed_requests_spread_over_every_replica(cluster):
    before = [r.served() for r in cluster.replicas]
    results = load(cluster, 60)
    failed = [r for r in results if not r[1]]
    assert not failed, failed
    served = [r.served() - b for r, b in zip(cluster.replicas, before)]
    assert sum(served) == 60, served
    assert min(served) >= 10, served  # per request, not per connection: a pinned channel gives 0 to two of them


def test_a_voice_uploaded_through_the_proxy_is_heard_from_every_replica(cluster):
    clip = io.BytesIO()
    soundfile.write(clip, (0.2 * np.sin(np.arange(24000) / 9)).astype(np.float32), 24000, format="WAV")
    created = httpx.post(cluster.nginx.base + "/v1/audio/voices", files={"file": ("v.wav", clip.getvalue())},
                         data={"name": "team_voice", "transcript": "Hello from the whole team."}, timeout=60)
    assert created.status_code == 201, created.text
    for replica in cluster.live():  # each replica, asked directly, knows it and speaks with it
        client = openai.OpenAI(base_url=replica.base + "/v1", api_key="unused", max_retries=0, timeout=120)
        audio = client.audio.speech.create(model="tts-1", voice="team_voice", input="Hi from one replica.",
                                           response_format="wav", extra_body={"seed": next(_seeds),
                                                                              "max_new_tokens": 40})
        assert soundfile.read(io.BytesIO(audio.content))[0].size > 0
    before = [r.served() for r in cluster.replicas]
    results = [cluster.speak(kind, voice="team_voice") for kind in KINDS * 3]  # and through the proxy
    assert all(ok for _, ok, _ in results), results
    assert all(r.served() > b for r, b in zip(cluster.replicas, before))


def test_websocket_sessions_pass_through_the_proxy(cluster):
    """Speaking sessions through nginx (upgraded, each held by one replica): the same audio as
    a session sent straight to a replica."""
    import asyncio
    import json

    import websockets

    async def speak(base):
        async with websockets.connect(base.replace("http://", "ws://") + "/v1/audio/speech/stream") as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "session.update", "session": {"voice": "belinda", "seed": 4,
                                                                            "max_new_tokens": 40}}))
            for piece in ("Through the proxy. ", "Still one ", "session."):
                await ws.send(json.dumps({"type": "input_text.append", "text": piece}))
            await ws.send(json.dumps({"type": "input_text.done"}))
            messages = [m async for m in ws]
        return b"".join(m for m in messages if isinstance(m, bytes)), [json.loads(m) for m in messages
                                                                       if isinstance(m, str)]

    proxied, events = asyncio.run(speak(cluster.nginx.base))
    direct, _ = asyncio.run(speak(cluster.live()[0].base))
    assert proxied and proxied == direct
    assert [e["text"] for e in events if e["type"] == "segment.done"] == ["Through the proxy.", "Still one session."]


def test_sigterm_to_a_replica_under_load_fails_nothing(cluster):
    victim = cluster.live()[0]
    busy = []

    def terminate():
        busy.append(victim.metric("higgs_tts_in_flight"))
        victim.signal(signal.SIGTERM)

    results = load(cluster, 36, during=terminate)
    failed = [r for r in results if not r[1]]
    assert not failed, failed
    assert victim.wait(60) == 0, victim.output()
    assert busy[0] >= 1  # it held requests when the signal came
    assert '"event": "drained", "stopped": 0' in victim.output()  # and finished every one of them
    cluster.route(cluster.live())  # Kubernetes drops the pod from the endpoints


def test_sigkill_to_a_replica_under_load_fails_only_what_had_started_on_it(cluster):
    cluster.add()  # back to three
    cluster.route(cluster.live())
    victim = cluster.live()[0]
    in_flight = []

    def kill():
        in_flight.append(victim.metric("higgs_tts_in_flight"))
        victim.signal(signal.SIGKILL)

    results = load(cluster, 36, during=kill)
    failed = [r for r in results if not r[1]]
    assert victim.wait(10) == -signal.SIGKILL
    # only requests that had started on the killed replica fail: at most what it held when it
    # died (read a moment before the signal: one more may have been admitted in between), each
    # with an error a caller retries (a cut stream); every other request succeeded, the ones
    # sent to it after it died included (nginx and the retry policy took them elsewhere)
    assert in_flight[0] >= 1 and len(failed) <= in_flight[0] + 1, (failed, in_flight)
    for kind, _, error in failed:
        cut = "UNAVAILABLE" if kind.startswith("grpc") else "incomplete chunked read"
        assert cut in error, (kind, error)
    cluster.route(cluster.live())


def test_a_replica_started_during_the_load_receives_traffic_once_ready(cluster):
    fresh = []
    finished = threading.Event()

    def start():
        def scale_up():
            replica = cluster.add(wait=False)
            replica.wait_ready()  # the readiness probe passes: the endpoints now include it
            fresh.append(replica)
            cluster.route(cluster.live())
        threading.Thread(target=lambda: (scale_up(), finished.set()), daemon=True).start()

    results = load(cluster, 48, workers=4, during=start)
    assert finished.wait(120)
    failed = [r for r in results if not r[1]]
    assert not failed, failed
    if fresh[0].served() == 0:  # the load may end before it was routed: a few more requests
        more = load(cluster, 12)
        assert all(ok for _, ok, _ in more), more
    assert fresh[0].served() >= 1
