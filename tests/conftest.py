"""Shared fixtures: the tiny random-weight demo bundle, built once per test session through the
same code as `higgs-tts demo-model`."""

import pytest


@pytest.fixture(scope="session")
def demo_bundle(tmp_path_factory):
    from boson_multimodal.demo import write_demo_bundle

    return write_demo_bundle(tmp_path_factory.mktemp("demo-model"))


@pytest.fixture(scope="session")
def demo_runtime(demo_bundle):
    from boson_multimodal.runtime import HiggsAudio

    return HiggsAudio.load(demo_bundle, device="cpu")


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    """A real S3 server on loopback, shared by the session's S3 tests."""
    from tests.seaweed import SeaweedS3

    server = SeaweedS3(tmp_path_factory.mktemp("seaweed")).start()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(seaweed, request):
    """A fresh bucket per test."""
    import re

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") or "bucket"
    name = f"t-{name}-{abs(hash(request.node.nodeid)) % 10**6}"
    seaweed.client().create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def demo_asr(tmp_path_factory):
    """A tiny random-weight Whisper, written by the same code as `higgs-tts demo-asr`."""
    from adapters.whisper.demo import write_demo_asr

    return write_demo_asr(tmp_path_factory.mktemp("demo-asr"))
