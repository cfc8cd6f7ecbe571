"""The prompt-prefix cache on the demo bundle (float32, CPU): a request served from it gives
exactly the codes of the same request prefilled from scratch (greedy and seeded, one chunk and
several, every voice shape), after eviction and refill too, with prefixes that run past KV
bucket boundaries; entries are keyed by content, never by name."""

import hashlib

import pytest
import torch

from boson_multimodal.loader import load_bundle
from boson_multimodal.runtime import Finished, HiggsAudio, SpeechJob, VoiceClip
from boson_multimodal.sampling import SamplingConfig

GREEDY = SamplingConfig(temperature=0, ras_win_len=0)


def clip(bundle, name, audio=None):
    data = audio if audio is not None else (bundle.voices / f"{name}.wav").read_bytes()
    return VoiceClip(name, (bundle.voices / f"{name}.txt").read_text().strip(), data, hashlib.sha256(data).hexdigest())


@pytest.fixture(scope="module")
def bundle(demo_bundle):
    return load_bundle(demo_bundle, device="cpu")


def runtime(bundle, cache_bytes, **decoder):
    rt = HiggsAudio(bundle, max_cache_len=2048, prefix_cache_bytes=cache_bytes)
    if decoder:
        from boson_multimodal.batch import BatchDecoder

        rt.decoder.close()
        rt.decoder = BatchDecoder(bundle.model, max_cache_len=2048, prefix_cache_bytes=cache_bytes, **decoder)
    return rt


def codes(rt, request):
    finished = [e for e in rt.speak(request) if isinstance(e, Finished)][0]
    return finished, [c.clone() for c in finished.chunk_codes]


def requests(demo_bundle):
    b, m = clip(demo_bundle, "belinda"), clip(demo_bundle, "en_man")
    long = "One two three four five. Six seven eight nine ten. Eleven twelve thirteen."
    return [
        SpeechJob("Hello there, my friend.", [b], sampling=GREEDY, max_new_tokens=60, stop_on_silence=False),
        SpeechJob("Another sentence to say.", [b], sampling=SamplingConfig(seed=4), max_new_tokens=60,
                  stop_on_silence=False),
        SpeechJob("In a quiet room.", [b], scene="A quiet room.", sampling=GREEDY, max_new_tokens=60,
                  stop_on_silence=False),
        SpeechJob("[SPEAKER0] Hi. [SPEAKER1] Hello.", [b, m], sampling=SamplingConfig(seed=9), max_new_tokens=60,
                  stop_on_silence=False),
        SpeechJob(long, [m], sampling=GREEDY, max_new_tokens=50, chunk_method="word", chunk_max_word_num=5,
                  stop_on_silence=False),
        SpeechJob("No voice at all.", [], scene="Outdoors.", sampling=SamplingConfig(seed=1), max_new_tokens=40,
                  stop_on_silence=False),
    ]


@pytest.mark.parametrize("decoder", [{}, {"smallest_bucket": 64}], ids=["default buckets", "64-position buckets"])
def test_cached_prefixes_give_the_codes_of_a_full_prefill(bundle, demo_bundle, decoder):
    plain, cached = runtime(bundle, 0, **decoder), runtime(bundle, 64 << 20, **decoder)
    seen = []
    for request in requests(demo_bundle) * 2:  # the second round hits every prefix
        expected_done, expected = codes(plain, request)
        done, got = codes(cached, request)
        assert len(got) == len(expected) and all(torch.equal(a, b) for a, b in zip(got, expected))
        seen += done.prefix_cache
        assert done.prefill_tokens <= expected_done.prefill_tokens
    stats = cached.decoder.executor.prefix_cache.stats
    assert stats.hits >= 6 and stats.misses >= 4 and "hit" in seen and "miss" in seen
    if decoder:  # every voice prefix runs past several 64-position buckets
        request = requests(demo_bundle)[0]
        base = cached.turns(request)
        from boson_multimodal.prompt import Turn

        assert cached.prompts.build(base + [Turn("user", "x")], prefix_turns=len(base)).prefix_length > 2 * 64
    plain.close()
    cached.close()


def test_eviction_and_refill_change_nothing(bundle, demo_bundle):
    """A budget that holds one prefix: two voices in turn evict each other every time."""
    one = runtime(bundle, 0)
    b, m = clip(demo_bundle, "belinda"), clip(demo_bundle, "en_man")
    probe = runtime(bundle, 64 << 20)
    codes(probe, SpeechJob("x", [b], sampling=GREEDY, max_new_tokens=10, stop_on_silence=False))
    budget = probe.decoder.executor.prefix_cache.stats.bytes + 1024
    small = runtime(bundle, budget)
    for voice in (b, m, b, m, b):
        request = SpeechJob("Evict me, then refill.", [voice], sampling=SamplingConfig(seed=2), max_new_tokens=50,
                            stop_on_silence=False)
        assert all(torch.equal(x, y) for x, y in zip(codes(small, request)[1], codes(one, request)[1]))
    stats = small.decoder.executor.prefix_cache.stats
    assert stats.evictions >= 3 and stats.entries == 1 and stats.bytes <= budget
    for rt in (one, probe, small):
        rt.close()


def test_a_changed_clip_under_the_same_name_never_hits_a_stale_entry(bundle, demo_bundle):
    import io

    import numpy as np
    import soundfile

    cached, plain = runtime(bundle, 64 << 20), runtime(bundle, 0)
    first = clip(demo_bundle, "belinda")
    buffer = io.BytesIO()
    soundfile.write(buffer, (0.3 * np.sin(np.arange(48000) / 5)).astype(np.float32), 24000, format="WAV")
    changed = clip(demo_bundle, "belinda", buffer.getvalue())
    for voice, expected_status in ((first, "miss"), (changed, "miss"), (changed, "hit")):
        request = SpeechJob("Same name, other clip.", [voice], sampling=GREEDY, max_new_tokens=40,
                            stop_on_silence=False)
        done, got = codes(cached, request)
        assert done.prefix_cache == [expected_status]
        assert all(torch.equal(x, y) for x, y in zip(got, codes(plain, request)[1]))
    cached.close()
    plain.close()


def test_warm_voices_are_hits_from_the_first_request(demo_bundle):
    from adapters.higgs import HiggsSpeechEngine
    from core.domain.request import NamedVoice, Sampling, SpeechRequest
    from core.domain.voice import VoicePrompt
    from core.ports.speech_engine import EngineDone

    voice = VoicePrompt("belinda", (demo_bundle.voices / "belinda.txt").read_text().strip(),
                        (demo_bundle.voices / "belinda.wav").read_bytes())
    engine = HiggsSpeechEngine(demo_bundle, device="cpu", warm_voices=lambda: [voice])
    engine.warm_up()
    request = SpeechRequest("Warm from the start.", voices=(NamedVoice("belinda"),),
                            sampling=Sampling(max_new_tokens=30, seed=1))
    import threading

    done = [e for e in engine.speak(request.synthesis, [voice], threading.Event()) if isinstance(e, EngineDone)][0]
    assert done.work.prefix_cache == ("hit",)
    load = engine.load()
    assert load.prefix_hits >= 1 and load.prefix_bytes > 0
    engine.close()
