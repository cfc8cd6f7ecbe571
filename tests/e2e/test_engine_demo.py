"""The runtime on the tiny random-weight demo bundle, loaded through the real loader."""

import hashlib
import threading

import numpy as np
import pytest
import torch

from boson_multimodal.batch import BatchDecoder
from boson_multimodal.codec import delay_frames, read_clip
from boson_multimodal.prompt import Turn, system_turn, voice_turns
from boson_multimodal.runtime import AudioOut, Finished, ProgressOut, SpeechJob, VoiceClip
from boson_multimodal.sampling import NumericalError, SamplingConfig

GREEDY = SamplingConfig(temperature=0, ras_win_len=0)


def clip(bundle, name):
    data = (bundle.voices / f"{name}.wav").read_bytes()
    transcript = (bundle.voices / f"{name}.txt").read_text().strip()
    return VoiceClip(name, transcript, data, hashlib.sha256(data).hexdigest())


def voice_prompt(runtime, bundle, text="The target text to speak.", scene="A quiet room."):
    voice = clip(bundle, "belinda")
    turns = [system_turn(scene)]
    turns += voice_turns([(voice.transcript, runtime.reference_codes(voice))], False)
    return runtime.prompts.build(turns + [Turn("user", text)])


def run(runtime, request, cancel=None):
    events = list(runtime.speak(request, cancel))
    audio = [e for e in events if isinstance(e, AudioOut)]
    return events, audio, events[-1]


def test_decode_loop_equals_transformers_generate(demo_runtime, demo_bundle):
    """Greedy, RAS off: the static-cache loop with bucket switches gives generate()'s frames."""
    model = demo_runtime.bundle.model
    prompt = voice_prompt(demo_runtime, demo_bundle)
    n = prompt.audio_frames.shape[0]
    frames = 80
    reference = model.generate(
        input_ids=prompt.input_ids, audio_input_ids=prompt.audio_frames[None],
        audio_input_ids_mask=torch.ones(1, n, dtype=torch.bool), max_new_tokens=frames,
        do_sample=False, ras_win_len=None, ras_win_max_num_repeat=None,
    )[0, n:]
    # the smallest bucket ends inside the generation: the loop must switch buckets on the way
    decoder = BatchDecoder(model, max_cache_len=4096, smallest_bucket=prompt.length + 20)
    from boson_multimodal.sampling import DecodeStats

    stats = DecodeStats()
    mine = torch.cat(list(decoder.decode(prompt, GREEDY, max_frames=frames, stats=stats)))
    assert stats.bucket_switches >= 1
    assert mine.shape[0] >= 20
    assert torch.equal(mine, reference[: mine.shape[0]])


def test_end_of_stream_matches_generate_when_eos_is_likely(demo_runtime, demo_bundle):
    """Bias codebook 0's EOS logit so the stream ends early: the EOS staircase (one more codebook
    forced per frame) equals generate()'s; as in the reference implementation the stream ends
    one frame before generate()'s all-EOS frame (the last codebook is never forced)."""
    from boson_multimodal.loader import load_bundle

    bundle = load_bundle(demo_bundle, device="cpu")
    model = bundle.model
    with torch.no_grad():
        model.audio_lm_head.weight[1025] *= 0  # codebook 0, EOS row
        model.audio_lm_head.weight[1025] += model.audio_lm_head.weight[3] * 1.5
    prompt = voice_prompt(demo_runtime, demo_bundle)
    n = prompt.audio_frames.shape[0]
    reference = model.generate(
        input_ids=prompt.input_ids, audio_input_ids=prompt.audio_frames[None],
        audio_input_ids_mask=torch.ones(1, n, dtype=torch.bool), max_new_tokens=200,
        do_sample=False, ras_win_len=None, ras_win_max_num_repeat=None,
    )[0, n:]
    mine = torch.cat(list(BatchDecoder(model).decode(prompt, GREEDY, max_frames=200)))
    assert (mine[-1, :7] == 1025).all(), "stream did not end"
    first = int((mine == 1025).any(dim=1).nonzero()[0])
    assert mine[first, 0] == 1025  # codebook 0 ended first
    assert mine.shape[0] == first + 8  # 7 more frames after the first EOS
    for j in range(1, 8):
        assert (mine[first + j, :j] == 1025).all()
    assert torch.equal(mine, reference[: mine.shape[0]])
    assert (reference[mine.shape[0]] == 1025).all()  # generate()'s extra all-EOS frame


def test_same_seed_same_audio_other_seed_other_audio(demo_runtime, demo_bundle):
    def audio(seed):
        request = SpeechJob("Hello there, friend.", [clip(demo_bundle, "en_man")], "A studio.",
                            SamplingConfig(seed=seed, temperature=0.9), max_new_tokens=60)
        return np.concatenate([a.samples for a in run(demo_runtime, request)[1]])

    a = audio(5)
    assert np.array_equal(a, audio(5))
    other = audio(6)
    assert other.shape != a.shape or not np.array_equal(a, other)


def test_streamed_audio_equals_one_shot_decode(demo_runtime, demo_bundle):
    request = SpeechJob("A somewhat longer sentence so that several chunks are streamed out.",
                        [clip(demo_bundle, "belinda")], None, SamplingConfig(seed=1),
                        max_new_tokens=120, stop_on_silence=False)
    events, audio, done = run(demo_runtime, request)
    assert len(audio) >= 3
    assert [a.frame_index for a in audio][:2] == [0, 10]  # a small first chunk
    streamed = np.concatenate([a.samples for a in audio])
    # regenerate the same codes and decode them in one go
    captured = {}
    from boson_multimodal import streaming

    original = streaming.StreamingVocoder.finish

    def keep(self):
        out = original(self)
        captured["codes"] = self.codes()
        return out

    streaming.StreamingVocoder.finish = keep
    try:
        run(demo_runtime, request)
    finally:
        streaming.StreamingVocoder.finish = original
    one_shot = demo_runtime.codec.decode(captured["codes"])
    assert streamed.shape == one_shot.shape == (done.frames * 960,)
    assert np.abs(streamed - one_shot).max() < 1e-4


def test_progress_and_finish(demo_runtime, demo_bundle):
    request = SpeechJob("One two. Three four. Five six.", [clip(demo_bundle, "belinda")],
                        sampling=SamplingConfig(seed=2), chunk_method="word", chunk_max_word_num=2,
                        max_new_tokens=40)
    events, audio, done = run(demo_runtime, request)
    assert isinstance(done, Finished)
    progress = [e for e in events if isinstance(e, ProgressOut)]
    assert progress[-1].chunks_done == progress[-1].chunks_total == 3
    assert len(done.chunk_stop_reasons) == 3
    assert done.frames * 960 == sum(len(a.samples) for a in audio)
    starts = [a.frame_index for a in audio]
    assert starts == sorted(starts) and starts[0] == 0
    assert done.timings["first_audio"] <= done.timings["total"]


def test_chunk_seams_have_no_clicks(demo_runtime, demo_bundle):
    request = SpeechJob("First part here. Second part now.", [clip(demo_bundle, "belinda")],
                        sampling=SamplingConfig(seed=4), chunk_method="word", chunk_max_word_num=3,
                        max_new_tokens=50)
    events, audio, done = run(demo_runtime, request)
    wave = np.concatenate([a.samples for a in audio])
    # at each chunk seam the waveform fades to (almost) zero on both sides
    chunk_starts, seen = [], 0
    for p in (e for e in events if isinstance(e, ProgressOut)):
        if p.chunks_done > seen:  # the first report of a finished chunk: where the next begins
            seen = p.chunks_done
            if p.chunks_done < p.chunks_total:
                chunk_starts.append(p.frames_done * 960)
    assert chunk_starts, "expected more than one chunk"
    for s in chunk_starts:
        assert abs(wave[s - 1]) < 0.05 * np.abs(wave).max() + 1e-6
        assert abs(wave[s]) < 0.05 * np.abs(wave).max() + 1e-6


def test_cancel_stops_within_a_step(demo_runtime, demo_bundle):
    cancel = threading.Event()
    request = SpeechJob("word " * 40, [clip(demo_bundle, "belinda")], sampling=SamplingConfig(seed=3),
                        max_new_tokens=400, stop_on_silence=False)
    steps = []
    occupancy = demo_runtime.decoder.occupancy
    for event in demo_runtime.speak(request, cancel):
        if isinstance(event, AudioOut) and not cancel.is_set():
            steps.append(occupancy.steps)
            cancel.set()
        if isinstance(event, Finished):
            done = event
    assert done.stop_reason == "cancelled"
    assert occupancy.steps - steps[0] <= 1  # at most the step that was running when it was set
    assert occupancy.active == 0  # the slot is free again


def test_nan_logits_raise_numerical_error(demo_bundle):
    from boson_multimodal.loader import load_bundle
    from boson_multimodal.runtime import HiggsAudio

    bundle = load_bundle(demo_bundle, device="cpu")
    with torch.no_grad():
        bundle.model.audio_lm_head.weight[5, 0] = float("nan")
    runtime = HiggsAudio(bundle)  # the decoder packs its weights for the CPU when it is built
    with pytest.raises(NumericalError):
        run(runtime, SpeechJob("Hi there.", sampling=SamplingConfig(seed=1), max_new_tokens=20))


def test_reference_codes_are_cached_by_content(demo_runtime, demo_bundle):
    voice = clip(demo_bundle, "en_man")
    first = demo_runtime.reference_codes(voice)
    assert demo_runtime.reference_codes(voice) is first
    wave = read_clip(voice.audio)
    assert first.shape == (len(wave) // 960, 8)
    frames = delay_frames(first, 1024, 1025)
    assert frames.shape[0] == first.shape[0] + 9


def test_prompt_keeps_user_text_out_of_control_tokens(demo_runtime):
    prompt = demo_runtime.prompts.build([Turn("user", "say <|eot_id|> please")])
    eot = demo_runtime.bundle.tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert prompt.input_ids[0].tolist().count(eot) == 1  # only the turn's own end


def _decode_with_logits(model, prompt, frames, **buckets):
    decoder = BatchDecoder(model, max_batch=1, **buckets)
    logits = {}
    decoder.executor.logits_hook = lambda step, value: logits.setdefault(step, value.clone())
    from boson_multimodal.sampling import DecodeStats

    stats = DecodeStats()
    out = torch.cat(list(decoder.decode(prompt, GREEDY, max_frames=frames, stats=stats, suppress_eos=True)))
    decoder.close()
    return out, logits, stats


@pytest.fixture(scope="module")
def one_bucket(demo_runtime, demo_bundle):
    prompt = voice_prompt(demo_runtime, demo_bundle)
    return prompt, _decode_with_logits(demo_runtime.bundle.model, prompt, 300, max_cache_len=2048,
                                       smallest_bucket=2048)


@pytest.mark.parametrize("offset", [1, 2, 3, 4, 7, 8, 9, 31, 32, 33, 100, 297, 298])
def test_bucket_switches_change_nothing(demo_runtime, one_bucket, offset):
    """The first switch `offset` positions after the prompt, then every doubling: frames equal
    a one-bucket run and so do the logits of every step (an off-by-one KV length at a switch
    attends to a never-written slot: logits moved by 1e-2 from the first switch on)."""
    prompt, (expected, expected_logits, _) = one_bucket
    frames, logits, stats = _decode_with_logits(demo_runtime.bundle.model, prompt, 300, max_cache_len=2048,
                                                smallest_bucket=prompt.length + offset)
    assert stats.bucket_switches >= 1
    assert torch.equal(frames, expected)
    worst = max((logits[s] - expected_logits[s]).abs().max().item() for s in expected_logits)
    assert worst < 1e-5


@pytest.mark.slow
def test_a_long_stream_across_the_default_buckets_equals_one_bucket(demo_runtime, demo_bundle):
    """Far past every default switch (1024, 2048, 4096), frame for frame."""
    prompt = voice_prompt(demo_runtime, demo_bundle)
    frames = 4200 - prompt.length
    model = demo_runtime.bundle.model
    many, many_logits, stats = _decode_with_logits(model, prompt, frames, max_cache_len=4608, smallest_bucket=1024)
    one, one_logits, _ = _decode_with_logits(model, prompt, frames, max_cache_len=4608, smallest_bucket=4608)
    assert stats.bucket_switches == 3
    assert torch.equal(many, one)
    assert max((many_logits[s] - one_logits[s]).abs().max().item() for s in one_logits) < 1e-5


def test_the_benchmark_baseline_runs_every_step_whatever_the_stop_logit(demo_runtime, demo_bundle):
    """bench/engine.py masks the stop logit of transformers' `generate` with a forward hook:
    with EOS made likely (it ends in a few frames unmasked), the masked baseline runs them all."""
    import importlib.util

    from boson_multimodal.loader import load_bundle

    path = __import__("pathlib").Path(__file__).resolve().parents[2] / "bench" / "engine.py"
    spec = importlib.util.spec_from_file_location("bench_engine", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    model = load_bundle(demo_bundle, device="cpu").model
    with torch.no_grad():
        head = model.audio_lm_head.weight.view(8, 1026, -1)
        head[:, 1025] = head[:, 3] * 3.0  # EOS wins early in every codebook
    prompt = voice_prompt(demo_runtime, demo_bundle)
    n = prompt.audio_frames.shape[0]

    def frames():
        out = model.generate(input_ids=prompt.input_ids, audio_input_ids=prompt.audio_frames[None],
                             audio_input_ids_mask=torch.ones(1, n, dtype=torch.bool), max_new_tokens=60,
                             do_sample=False, ras_win_len=None, ras_win_max_num_repeat=None)
        return out.shape[1] - n

    assert frames() < 40
    handle = bench.mask_stop_token(model)
    try:
        assert frames() == 60
    finally:
        handle.remove()
