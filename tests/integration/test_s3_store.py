"""S3ObjectStore against a real S3-protocol server (SeaweedFS on loopback), with faults
injected by a proxy: retried, or failed cleanly; never a partial object or an open upload."""

import hashlib
import json
import os
import time
import urllib.request

import pytest

from adapters.fake import FakeSpeechEngine, InMemoryVoiceLibrary
from adapters.s3 import S3Config, S3ObjectStore
from core.domain.audio import WavEncoder
from core.domain.errors import DomainError
from core.domain.events import AudioStored, SpeechCompleted, SpeechFailed
from core.domain.request import NamedVoice, OutputTarget, Sampling, SpeechRequest
from core.service.archive import AudioArchive
from core.service.generate_speech import GenerateSpeech
from tests.integration.s3_fault_proxy import FaultProxy
from tests.seaweed import ACCESS_KEY, SECRET_KEY

MIB = 1024 * 1024


def store_for(endpoint, **overrides):
    config = dict(endpoint_url=endpoint, region="us-east-1", path_style=True,
                  access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY,
                  backoff_initial=0.01, backoff_max=0.05, max_attempts=4, max_retry_seconds=10)
    config.update(overrides)
    return S3ObjectStore(S3Config(**config))


@pytest.fixture
def proxy(seaweed):
    proxy = FaultProxy(seaweed.endpoint)
    yield proxy
    proxy.close()


def open_uploads(seaweed, bucket):
    return seaweed.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def assert_absent(seaweed, bucket, key):
    store = store_for(seaweed.endpoint)
    assert not store.exists(bucket, key)
    assert open_uploads(seaweed, bucket) == []


def test_put_sets_content_type_metadata_and_presigned_url(seaweed, s3_bucket):
    store = store_for(seaweed.endpoint)
    stored = store.put(s3_bucket, "a/b.wav", b"RIFF....data", "audio/wav", {"request-id": "r-1", "voice": "belinda"})
    head = seaweed.client().head_object(Bucket=s3_bucket, Key="a/b.wav")
    assert head["ContentType"] == "audio/wav"
    assert head["Metadata"] == {"request-id": "r-1", "voice": "belinda"}
    assert stored.uri == f"s3://{s3_bucket}/a/b.wav" and stored.size == 12
    assert stored.etag == hashlib.md5(b"RIFF....data").hexdigest()
    assert "X-Amz-Expires=3600" in stored.url and SECRET_KEY not in stored.url
    with urllib.request.urlopen(stored.url) as response:
        assert response.read() == b"RIFF....data"


def test_tampered_presigned_url_is_refused(seaweed, s3_bucket):
    stored = store_for(seaweed.endpoint).put(s3_bucket, "t.wav", b"secret audio", "audio/wav")
    for tampered in (stored.url.replace("t.wav", "u.wav"), stored.url.replace("X-Amz-Signature=", "X-Amz-Signature=0")):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(tampered)
        assert info.value.code == 403


def test_presign_expiry_is_configurable_and_bounded(seaweed):
    store = store_for(seaweed.endpoint, presign_expiry=600)
    assert "X-Amz-Expires=600" in store.url_for("b-x", "k")
    with pytest.raises(ValueError):
        S3Config(presign_expiry=8 * 24 * 3600)


@pytest.mark.parametrize("action", ["503", "500", "reset"])
def test_transient_faults_are_retried(seaweed, s3_bucket, proxy, action):
    rule = proxy.add("PUT", "/k.wav", action, times=2)
    store = store_for(proxy.endpoint)
    store.put(s3_bucket, "k.wav", b"payload", "audio/wav")
    assert rule.hits == 2
    assert seaweed.client().get_object(Bucket=s3_bucket, Key="k.wav")["Body"].read() == b"payload"


def test_persistent_throttling_fails_after_the_bound_and_leaves_nothing(seaweed, s3_bucket, proxy):
    rule = proxy.add("PUT", "/gone.wav", "503", times=-1)
    store = store_for(proxy.endpoint, max_attempts=3)
    started = time.monotonic()
    with pytest.raises(DomainError) as info:
        store.put(s3_bucket, "gone.wav", b"payload", "audio/wav")
    assert info.value.type.value == "s3_upload_error" and info.value.code == "S3_UPLOAD_FAILED"
    assert "SlowDown" in info.value.message
    assert rule.hits == 3  # botocore retried nothing on its own: the attempts did not multiply
    assert time.monotonic() - started < 5
    assert_absent(seaweed, s3_bucket, "gone.wav")


def test_client_errors_fail_fast(seaweed, s3_bucket, proxy):
    wrong = store_for(proxy.endpoint, secret_access_key="not-the-secret")
    with pytest.raises(DomainError) as info:
        wrong.put(s3_bucket, "x.wav", b"x", "audio/wav")
    assert info.value.code == "S3_ACCESS_DENIED" and "not-the-secret" not in info.value.message
    with pytest.raises(DomainError) as info:
        store_for(proxy.endpoint).put("no-such-bucket-here", "x.wav", b"x", "audio/wav")
    assert info.value.code == "S3_NO_SUCH_BUCKET"
    puts = [r for r in proxy.requests if r[0] == "PUT"]
    assert len(puts) == 2  # one attempt each: no retries for client errors


def test_validate_bucket_access(seaweed, s3_bucket):
    store = store_for(seaweed.endpoint)
    store.validate_bucket_access(s3_bucket)
    with pytest.raises(DomainError) as info:
        store.validate_bucket_access("missing-bucket-x")
    assert info.value.code == "S3_NO_SUCH_BUCKET"
    with pytest.raises(DomainError) as info:
        store_for(seaweed.endpoint, secret_access_key="wrong").validate_bucket_access(s3_bucket)
    assert info.value.code == "S3_ACCESS_DENIED"


def test_multipart_part_fault_is_retried_and_bytes_match(seaweed, s3_bucket, proxy):
    data = os.urandom(12 * MIB)
    rule = proxy.add("PUT", "partNumber=2", "reset", times=1)
    store = store_for(proxy.endpoint, multipart_threshold=5 * MIB, part_size=5 * MIB)
    stored = store.put(s3_bucket, "big.bin", data, "application/octet-stream")
    assert rule.hits == 1 and stored.size == len(data)
    body = seaweed.client().get_object(Bucket=s3_bucket, Key="big.bin")["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    assert open_uploads(seaweed, s3_bucket) == []
    assert sum(1 for m, t, _ in proxy.requests if m == "PUT" and "partNumber=" in t) == 4  # 3 parts + 1 retry


def test_multipart_failure_aborts_the_upload(seaweed, s3_bucket, proxy):
    proxy.add("PUT", "partNumber=3", "500", times=-1)
    store = store_for(proxy.endpoint, multipart_threshold=5 * MIB, part_size=5 * MIB, max_attempts=2)
    with pytest.raises(DomainError) as info:
        store.put(s3_bucket, "broken.bin", os.urandom(11 * MIB), "application/octet-stream")
    assert info.value.code == "S3_UPLOAD_FAILED"
    assert any(m == "DELETE" and "uploadId=" in t for m, t, _ in proxy.requests)  # aborted
    assert_absent(seaweed, s3_bucket, "broken.bin")


def test_fifty_mib_goes_up_in_parts_and_hashes_equal(seaweed, s3_bucket, proxy):
    data = os.urandom(50 * MIB)
    store = store_for(proxy.endpoint)  # default threshold and part size: 8 MiB
    started = time.monotonic()
    store.put(s3_bucket, "fifty.bin", data, "application/octet-stream")
    elapsed = time.monotonic() - started
    parts = [t for m, t, _ in proxy.requests if m == "PUT" and "partNumber=" in t]
    assert len(parts) == 7  # ceil(50 / 8)
    body = seaweed.client().get_object(Bucket=s3_bucket, Key="fifty.bin")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest()
    print(f"\n50 MiB multipart upload through the proxy: {elapsed:.2f}s")


def test_generate_speech_stores_audio_and_event_record(seaweed, s3_bucket):
    store = store_for(seaweed.endpoint)
    generate = GenerateSpeech(FakeSpeechEngine(), InMemoryVoiceLibrary.with_demo_voices(), WavEncoder(),
                              AudioArchive(store))
    request = SpeechRequest("Hello from the tests.", voices=(NamedVoice("belinda"),),
                            sampling=Sampling(seed=3), output=OutputTarget(s3_bucket, "out/hello.wav"))
    events = list(generate(request))
    stored = next(e for e in events if isinstance(e, AudioStored))
    done = events[-1]
    assert isinstance(done, SpeechCompleted) and done.audio_url == stored.url
    with urllib.request.urlopen(done.audio_url) as response:
        assert response.read() == done.audio.data
    head = seaweed.client().head_object(Bucket=s3_bucket, Key="out/hello.wav")
    assert head["Metadata"]["request-id"] == request.request_id
    assert head["Metadata"]["voice"] == "belinda" and head["ContentType"] == "audio/wav"
    record = json.loads(seaweed.client().get_object(Bucket=s3_bucket, Key="out/hello.wav.json")["Body"].read())
    assert record["audio"]["uri"] == f"s3://{s3_bucket}/out/hello.wav"
    assert record["request"]["text"] == "Hello from the tests." and "X-Amz-Signature" not in json.dumps(record)


def test_failed_record_leaves_no_audio_behind(seaweed, s3_bucket, proxy):
    proxy.add("PUT", ".wav.json", "500", times=-1)
    store = store_for(proxy.endpoint, max_attempts=2)
    generate = GenerateSpeech(FakeSpeechEngine(), InMemoryVoiceLibrary.with_demo_voices(), WavEncoder(),
                              AudioArchive(store))
    events = list(generate(SpeechRequest("Hello.", output=OutputTarget(s3_bucket, "half.wav"))))
    assert isinstance(events[-1], SpeechFailed) and events[-1].error.type.value == "s3_upload_error"
    assert_absent(seaweed, s3_bucket, "half.wav")


def test_container_wires_s3_from_the_environment(seaweed, s3_bucket):
    from app.container import build_container, validate_storage
    from app.settings import Settings

    env = {"HIGGS_ENGINE": "fake", "S3_ENDPOINT_URL": seaweed.endpoint, "S3_BUCKET": s3_bucket,
           "S3_ADDRESSING_STYLE": "path", "AWS_DEFAULT_REGION": "us-east-1", "S3_PRESIGN_EXPIRY": "900",
           "BUCKET_ACCESS_KEY_ID": ACCESS_KEY, "BUCKET_SECRET_ACCESS_KEY": SECRET_KEY}
    settings = Settings.from_env(env)
    assert settings.store_kind == "s3" and SECRET_KEY not in repr(settings)
    container = build_container(settings)
    validate_storage(container)
    events = list(container.generate_speech()(SpeechRequest("Stored by default.", sampling=Sampling(seed=1))))
    stored = next(e for e in events if isinstance(e, AudioStored))
    assert stored.bucket == s3_bucket and stored.key.startswith("higgs-tts/") and "X-Amz-Expires=900" in stored.url
    with urllib.request.urlopen(stored.url) as response:
        assert response.read() == events[-1].audio.data
    bad = build_container(Settings.from_env({**env, "S3_BUCKET": "not-there-bucket"}))
    with pytest.raises(DomainError) as info:
        validate_storage(bad)
    assert info.value.code == "S3_NO_SUCH_BUCKET"


def test_botocore_calls_are_traced_under_the_request(seaweed, s3_bucket):
    from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from adapters.otel import OtelTracer
    from app.settings import Settings
    from app.telemetry import make_tracer_provider

    exporter = InMemorySpanExporter()
    provider = make_tracer_provider(Settings(), exporter)
    BotocoreInstrumentor().uninstrument()  # another test may have instrumented it for its provider
    BotocoreInstrumentor().instrument(tracer_provider=provider)
    try:
        generate = GenerateSpeech(FakeSpeechEngine(), InMemoryVoiceLibrary.with_demo_voices(), WavEncoder(),
                                  AudioArchive(store_for(seaweed.endpoint), tracer=OtelTracer(provider)),
                                  tracer=OtelTracer(provider))
        list(generate(SpeechRequest("Traced.", output=OutputTarget(s3_bucket, "traced.wav"))))
    finally:
        BotocoreInstrumentor().uninstrument()
    spans = exporter.get_finished_spans()
    store_span = next(s for s in spans if s.name == "speech.store")
    puts = [s for s in spans if s.name.startswith("S3.PutObject")]
    assert len(puts) == 2  # the audio and its event record
    assert all(s.parent.span_id == store_span.context.span_id for s in puts)
    assert all(SECRET_KEY not in str(dict(s.attributes)) for s in spans)
