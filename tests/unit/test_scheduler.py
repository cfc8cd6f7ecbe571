"""The decoder's scheduler on its own (no model, no tensor): arrival order, slot placement, the
batch and KV buckets each step takes, which requests are due, release; generated sequences of
arrivals, steps and departures keep every invariant."""

import random
import threading

import pytest
import torch

from boson_multimodal.graphs import batch_buckets
from boson_multimodal.sampling import DecodeStats, Prompt, SamplingConfig
from boson_multimodal.scheduler import DecodeJob, Scheduler


def job(length=10, max_frames=50, sync_every=8):
    prompt = Prompt(torch.zeros((1, length), dtype=torch.long), torch.zeros((0, 8), dtype=torch.long))
    return DecodeJob(prompt, SamplingConfig(), max_frames, threading.Event(), sync_every, DecodeStats(), False)


def test_requests_take_free_slots_in_arrival_order_and_wait_when_none_is_free():
    s = Scheduler(2, batch_buckets(2), [128, 256])
    jobs = [job() for _ in range(3)]
    for j in jobs:
        s.enqueue(j)
    assert s.occupancy.waiting == 3
    placed = []
    while (j := s.next_waiting()) is not None:
        placed.append((j, s.place(j)))
    assert placed == [(jobs[0], 0), (jobs[1], 1)] and s.occupancy.waiting == 1 and s.occupancy.active == 2
    assert s.release(jobs[0]) and not s.release(jobs[0])  # a slot is freed once
    j = s.next_waiting()
    assert j is jobs[2] and s.place(j) == 0 and s.occupancy.waiting == 0


@pytest.mark.parametrize("lengths, produced, batch, kv", [
    ([10], [1], 1, 128), ([127], [1], 1, 128), ([127], [2], 1, 256), ([10, 200], [1, 1], 2, 256),
    ([10, 10, 10], [5, 5, 5], 4, 128),
])
def test_a_step_takes_the_smallest_buckets_that_hold_every_row(lengths, produced, batch, kv):
    s = Scheduler(8, batch_buckets(8), [128, 256, 512])
    for length, made in zip(lengths, produced):
        j = job(length)
        s.enqueue(j)
        s.place(s.next_waiting())
        j.produced = made
    plan = s.plan_step()
    assert (plan.batch, plan.kv_size) == (batch, kv) and len(plan.jobs) == len(lengths)


def test_no_step_without_a_request_and_a_sequence_past_the_cache_is_an_error():
    s = Scheduler(2, batch_buckets(2), [128])
    assert s.plan_step() is None
    with pytest.raises(ValueError, match="exceeds the KV cache"):
        s.kv_bucket(129)


def test_generated_runs_keep_every_invariant():
    rng = random.Random(7)
    for trial in range(60):
        max_batch = rng.choice([1, 2, 3, 5, 8])
        s = Scheduler(max_batch, batch_buckets(max_batch), [64, 128, 256, 512])
        alive = []
        for _ in range(rng.randint(1, 200)):
            action = rng.random()
            if action < 0.3:
                s.enqueue(job(rng.randint(1, 300), rng.randint(1, 200), rng.choice([1, 4, 8])))
            elif action < 0.5:
                j = s.next_waiting()
                if j is not None:
                    j.prefilled(s.kv_bucket(j.prompt.length + 1), 0.0)
                    s.place(j)
                    alive.append(j)
            elif action < 0.8 and (plan := s.plan_step()) is not None:
                assert plan.batch in s.batch_sizes and plan.batch > max(j.slot for j in plan.jobs)
                assert all(j.reads_up_to() <= plan.kv_size for j in plan.jobs)
                smaller = [k for k in s.kv_sizes if k < plan.kv_size]
                assert not smaller or any(j.reads_up_to() > smaller[-1] for j in plan.jobs)
                s.stepped(plan, replayed=False)
            elif alive:
                j = alive.pop(rng.randrange(len(alive)))
                assert s.release(j)
            running = s.running()
            assert len(running) == s.occupancy.active <= max_batch
            assert len({j.slot for j in running}) == len(running)
            assert all(s.slots[j.slot] is j for j in running)
            assert s.occupancy.waiting == len(s.waiting)
        for j in s.due():
            assert j.is_due()
