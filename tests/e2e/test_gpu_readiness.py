"""What the GPU path needs, checked on the CPU: the KV cache planned from a card's memory (the
real model's shapes, cards of 16 to 141 GiB and one too small), and the CUDA-graph fallback
(a bucket whose capture or first replay fails is decoded eagerly with HIGGS_CUDA_GRAPHS=auto,
stops the start with on, is never captured with off), on the CPU stand-in of the graph path."""

import json
import logging
from pathlib import Path

import pytest
import torch

from boson_multimodal.batch import BatchDecoder
from boson_multimodal.graphs import EagerStep, GraphCaptureError
from boson_multimodal.limits import MAX_BATCH, MAX_CACHE_LEN, PREFIX_CACHE_MB
from boson_multimodal.memory import GIB, RESERVE_BYTES, NotEnoughMemory, kv_bytes_per_position, plan_kv
from boson_multimodal.prompt import Turn
from boson_multimodal.remap import generation_config
from boson_multimodal.sampling import SamplingConfig

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real_checkpoint" / "model" / "config.json"
WEIGHTS = (5_771_283_456 - 128_256 * 3072) * 2  # the real model without its text head, bf16
CONTEXT = GIB // 2  # the CUDA context and the libraries' own memory


@pytest.fixture(scope="module")
def per_position():
    return kv_bytes_per_position(generation_config(json.loads(REAL.read_text())), 2)


def test_a_position_of_the_real_model_is_112_kib(per_position):
    assert per_position == 2 * 28 * 8 * 128 * 2 == 112 * 1024


@pytest.mark.parametrize("card_gib", [16, 24, 48, 80, 141])
@pytest.mark.parametrize("max_batch", [1, 8, 64])
def test_the_slots_are_as_many_as_the_card_holds_and_the_budget_allows(per_position, card_gib, max_batch):
    total = card_gib * GIB
    plan = plan_kv(total, WEIGHTS + CONTEXT, per_position, max_batch, 8192)
    budget = int(total * 0.9) - WEIGHTS - CONTEXT - RESERVE_BYTES
    per_slot = per_position * 8192
    assert plan.budget_bytes == budget
    assert 1 <= plan.slots <= max_batch and plan.positions == 8192
    assert plan.kv_bytes == plan.slots * per_slot <= budget  # never more than the budget
    assert plan.slots == max_batch or (plan.slots + 1) * per_slot > budget  # and as many as fit
    text = plan.describe(max_batch)
    assert f"{plan.slots} slots x 8192 positions x 112 KiB" in text and f"{card_gib:.1f} GiB x 0.9" in text


def test_the_planned_slots_on_each_card(per_position):
    slots = {gib: plan_kv(gib * GIB, WEIGHTS + CONTEXT, per_position, 64, 8192).slots for gib in (16, 24, 48, 80, 141)}
    assert slots == {16: 2, 24: 10, 48: 35, 80: 64, 141: 64}


def test_the_table_of_slots_per_card_in_the_docs(per_position):
    """docs/performance.md "On a GPU": the service's defaults (the prefix cache's 512 MiB kept too)."""
    reserve = RESERVE_BYTES + PREFIX_CACHE_MB * 2**20
    table = {}
    for gib in (16, 24, 48, 80, 141):
        plans = [plan_kv(gib * GIB, WEIGHTS + CONTEXT, per_position, batch, positions, reserve_bytes=reserve)
                 for batch, positions in ((MAX_BATCH, MAX_CACHE_LEN), (64, 8192), (64, 4096))]
        table[gib] = (round(plans[0].budget_bytes / GIB, 1), *(p.slots for p in plans))
    assert table == {16: (1.4, 1, 1, 3), 24: (8.6, 8, 9, 19), 48: (30.2, 8, 34, 64), 80: (59.0, 8, 64, 64),
                     141: (113.9, 8, 64, 64)}
    readme = (Path(__file__).resolve().parents[2] / "docs" / "performance.md").read_text()
    for gib, (budget, *slots) in table.items():
        assert f"| {budget} GiB | {' | '.join(map(str, slots))} |" in readme


@pytest.mark.parametrize("card_gib,fraction", [(12, 0.9), (16, 0.5), (8, 1.0)])
def test_a_card_without_room_for_one_slot_is_refused_with_what_to_change(per_position, card_gib, fraction):
    with pytest.raises(NotEnoughMemory) as caught:
        plan_kv(card_gib * GIB, WEIGHTS + CONTEXT, per_position, 8, 8192, fraction)
    message = str(caught.value)
    assert "not even one KV-cache slot fits" in message and "0.88 GiB" in message
    assert "HIGGS_MAX_CACHE_LEN" in message and "HIGGS_GPU_MEMORY_FRACTION" in message
    if card_gib >= 16:  # following the advice (fraction 1.0, a shorter cache) starts the model
        assert plan_kv(card_gib * GIB, WEIGHTS + CONTEXT, per_position, 8, 1024, 1.0).slots >= 1


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_the_fraction_is_a_share_of_the_card(per_position, fraction):
    with pytest.raises(ValueError):
        plan_kv(80 * GIB, WEIGHTS, per_position, 8, 8192, fraction)


# -- the CUDA-graph fallback, on the CPU stand-in ----------------------------------------------------


class FailingCapture(EagerStep):
    """A graph whose capture fails (as a CUDA capture can: an operation a stream capture refuses)."""

    def __init__(self, step, device=None, pool=None) -> None:
        raise RuntimeError("operation not permitted when stream is capturing")


class FailingReplay(EagerStep):
    def replay(self) -> None:
        raise RuntimeError("CUDA error: an illegal instruction was encountered")


def prompt(demo_runtime):
    return demo_runtime.prompts.build([Turn("user", "Graphs or not, the same frames.")])


def frames(decoder, runtime, n=40):
    out = torch.cat(list(decoder.decode(prompt(runtime), SamplingConfig(seed=5), n, suppress_eos=True)))
    decoder.close()
    return out


@pytest.mark.parametrize("broken", [FailingCapture, FailingReplay])
def test_auto_decodes_a_bucket_eagerly_when_its_graph_fails(demo_runtime, broken, caplog):
    model = demo_runtime.bundle.model
    expected = frames(BatchDecoder(model, max_batch=2, max_cache_len=512), demo_runtime)
    decoder = BatchDecoder(model, max_batch=2, max_cache_len=512, use_cuda_graphs=True, smallest_bucket=256)
    decoder.executor.graphs.graph_type = broken
    with caplog.at_level(logging.WARNING, logger="boson_multimodal.graphs"):
        decoder.warm_up()
    assert sorted(decoder.executor.graphs.fallbacks) == [(b, s) for b in (1, 2) for s in (256, 512)]
    assert decoder.executor.graphs.captured == 0
    assert len([r for r in caplog.records if "decoding such buckets eagerly" in r.message]) == 1  # one warning
    assert torch.equal(frames(decoder, demo_runtime), expected)


def test_on_makes_a_failed_capture_fatal(demo_runtime):
    decoder = BatchDecoder(demo_runtime.bundle.model, max_batch=2, max_cache_len=512, use_cuda_graphs=True,
                           smallest_bucket=256, cuda_graphs="on")
    decoder.executor.graphs.graph_type = FailingCapture
    with pytest.raises(GraphCaptureError, match="HIGGS_CUDA_GRAPHS=on"):
        decoder.warm_up()
    decoder.close()


def test_off_never_captures_and_auto_captures_every_bucket(demo_runtime):
    model = demo_runtime.bundle.model
    off = BatchDecoder(model, max_batch=2, max_cache_len=512, cuda_graphs="off")
    off.warm_up()
    assert not off.executor.use_cuda_graphs and len(off.executor.graphs) == 0
    off.close()
    auto = BatchDecoder(model, max_batch=2, max_cache_len=512, use_cuda_graphs=True, smallest_bucket=256)
    auto.warm_up()
    assert auto.executor.graphs.captured == 4 and auto.executor.graphs.fallbacks == []
    auto.close()
    with pytest.raises(ValueError, match="CUDA graph mode"):
        BatchDecoder(model, max_batch=1, max_cache_len=256, cuda_graphs="sometimes")


def test_the_engine_reports_graph_states_to_the_metrics(demo_bundle):
    from adapters.higgs import HiggsSpeechEngine
    from adapters.runpod.metrics import WorkerMetrics

    engine = HiggsSpeechEngine(demo_bundle, device="cpu", max_batch=2, max_cache_len=512)
    engine.warm_up()
    graphs = engine._runtime.decoder.executor.graphs
    graphs.graph_type = FailingCapture
    graphs.capture(1, 512)  # a bucket whose capture fails, as at a GPU's warm-up
    load = engine.load()
    assert load.capacity == 2 and load.graphs_fallback == 1
    text = WorkerMetrics(engine_load=engine.load).render().decode()
    assert 'higgs_cuda_graphs{state="fallback"} 1.0' in text and 'higgs_cuda_graphs{state="captured"}' in text
    engine.close()


# -- the plan at start: the engine takes the slots the card holds, or refuses to start -------------


def planned_on_a_card(card_bytes: int, used_bytes: int):
    """plan_for_device as on a CUDA card of `card_bytes` with `used_bytes` in use after the weights
    (this CPU has no card to ask)."""

    def plan(model, device, max_batch, max_cache_len, fraction, prefix_cache_bytes=0):
        per_position = kv_bytes_per_position(model.config, next(model.parameters()).element_size())
        return plan_kv(card_bytes, used_bytes, per_position, max_batch, max_cache_len, fraction, reserve_bytes=0)

    return plan


def test_the_engine_starts_with_the_slots_the_card_holds(demo_bundle, demo_runtime, monkeypatch, caplog):
    from adapters.higgs import HiggsSpeechEngine

    per_slot = kv_bytes_per_position(demo_runtime.config, 4) * 512
    monkeypatch.setattr("boson_multimodal.runtime.plan_for_device", planned_on_a_card(10 * per_slot, 6 * per_slot))
    engine = HiggsSpeechEngine(demo_bundle, device="cpu", max_batch=8, max_cache_len=512, gpu_memory_fraction=0.7)
    with caplog.at_level(logging.INFO, logger="boson_multimodal.runtime"):
        engine.warm_up()
    assert engine.load().capacity == 1  # 10 x 0.7 - 6 = 1 slot's worth of the card
    assert "KV cache: 1 slots x 512 positions" in caplog.text and "memory caps it" in caplog.text
    engine.close()


def test_a_card_too_small_for_one_slot_stops_the_start_with_what_to_change(demo_bundle, monkeypatch, caplog):
    from adapters.higgs import HiggsSpeechEngine
    from core.domain.errors import DomainError, ErrorCode

    monkeypatch.setattr("boson_multimodal.runtime.plan_for_device", planned_on_a_card(100, 99))
    engine = HiggsSpeechEngine(demo_bundle, device="cpu", max_batch=8, max_cache_len=512)
    with caplog.at_level(logging.ERROR), pytest.raises(DomainError) as caught:
        engine.warm_up()
    assert caught.value.code == ErrorCode.MODEL_LOAD_FAILED and "does not fit this GPU" in caught.value.message
    assert "not even one KV-cache slot fits" in caplog.text and "HIGGS_GPU_MEMORY_FRACTION" in caplog.text
    assert not engine.is_ready()
