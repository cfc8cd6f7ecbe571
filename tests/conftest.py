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
