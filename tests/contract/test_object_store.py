"""The ObjectStore contract: every implementation passes the same suite.
Later adapters join by adding a fixture param (see `STORES`)."""

import urllib.request
import uuid

import pytest

from adapters.fake import InMemoryObjectStore
from adapters.local import LocalObjectStore
from core.domain.errors import DomainError


def _memory(tmp_path, request):
    return InMemoryObjectStore()


def _local(tmp_path, request):
    return LocalObjectStore(tmp_path / "store")


def _s3(tmp_path, request):
    from adapters.s3 import S3Config, S3ObjectStore
    from tests.seaweed import ACCESS_KEY, SECRET_KEY

    seaweed = request.getfixturevalue("seaweed")
    buckets = {b["Name"] for b in seaweed.client().list_buckets().get("Buckets", [])}
    if BUCKET not in buckets:
        seaweed.client().create_bucket(Bucket=BUCKET)
    return S3ObjectStore(S3Config(endpoint_url=seaweed.endpoint, region="us-east-1", path_style=True,
                                  access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY))


STORES = {"memory": _memory, "local": _local, "s3": _s3}
# stores whose URLs a client can fetch (the in-memory one's are names only)
FETCHABLE = {"local", "s3"}


@pytest.fixture(params=sorted(STORES))
def store(request, tmp_path):
    return STORES[request.param](tmp_path, request)


BUCKET = "contract-bucket"


def test_put_then_get_returns_the_bytes(store):
    data = bytes(range(256)) * 100
    stored = store.put(BUCKET, "a/b/c.wav", data, "audio/wav", {"request-id": "r1"})
    assert stored.bucket == BUCKET and stored.key == "a/b/c.wav"
    assert stored.size == len(data)
    assert store.get(BUCKET, "a/b/c.wav") == data
    assert store.exists(BUCKET, "a/b/c.wav")


def test_an_existing_object_is_kept_unless_overwrite_is_asked(store):
    key = f"k-{uuid.uuid4().hex}.json"
    store.put(BUCKET, key, b"one", "application/json")
    with pytest.raises(DomainError) as refused:
        store.put(BUCKET, key, b"two", "application/json")
    assert refused.value.code == "OBJECT_EXISTS" and refused.value.type.value == "s3_upload_error"
    assert store.get(BUCKET, key) == b"one"
    store.put(BUCKET, key, b"three", "application/json", overwrite=True)
    assert store.get(BUCKET, key) == b"three"


def test_a_large_existing_object_is_kept_too(store):
    """The multipart path (S3: conditional CompleteMultipartUpload) refuses the same way."""
    if hasattr(store, "config"):
        from adapters.s3 import S3Config, S3ObjectStore

        store = S3ObjectStore(S3Config(**{**store.config.__dict__, "multipart_threshold": 5 * 2**20,
                                          "part_size": 5 * 2**20}), store.client)
    key = f"big-{uuid.uuid4().hex}.wav"
    big = bytes(6 * 2**20)
    store.put(BUCKET, key, big, "audio/wav")
    with pytest.raises(DomainError) as refused:
        store.put(BUCKET, key, b"x" + big, "audio/wav")
    assert refused.value.code == "OBJECT_EXISTS"
    assert store.get(BUCKET, key) == big


def test_delete_removes_and_is_idempotent(store):
    store.put(BUCKET, "gone.wav", b"x", "audio/wav")
    store.delete(BUCKET, "gone.wav")
    assert not store.exists(BUCKET, "gone.wav")
    store.delete(BUCKET, "gone.wav")
    store.delete(BUCKET, "never-there.wav")


def test_missing_object_does_not_exist(store):
    assert not store.exists(BUCKET, "nothing/here.wav")


def test_url_for_names_the_object(store):
    stored = store.put(BUCKET, "dir/u.wav", b"abc", "audio/wav")
    assert "u.wav" in stored.url and "u.wav" in store.url_for(BUCKET, "dir/u.wav")
    assert stored.uri


@pytest.mark.parametrize("name", sorted(FETCHABLE))
def test_fetchable_urls_return_the_bytes(name, tmp_path, request):
    store = STORES[name](tmp_path, request)
    stored = store.put(BUCKET, "fetch/me.bin", b"payload", "application/octet-stream")
    with urllib.request.urlopen(stored.url) as response:
        assert response.read() == b"payload"


def test_local_store_refuses_keys_escaping_the_bucket(tmp_path):
    store = LocalObjectStore(tmp_path)
    with pytest.raises(DomainError) as info:
        store.put(BUCKET, "../other/x.wav", b"x", "audio/wav")
    assert info.value.code == "INVALID_S3_KEY"
    assert not (tmp_path / "other").exists()


def test_a_bucket_the_store_can_use_passes_the_check_before_any_work(store):
    """validate_bucket_access is every store's (the servers and `synth --bucket` call it before
    generating): a usable bucket passes and a put into it then works; S3's refusal of a missing
    bucket is in tests/integration/test_s3_store.py."""
    assert store.validate_bucket_access(BUCKET) is None
    stored = store.put(BUCKET, f"checked-{uuid.uuid4().hex}.wav", b"RIFF", "audio/wav")
    assert store.exists(BUCKET, stored.key)
