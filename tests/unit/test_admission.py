"""The service's one admission queue: `capacity` generate at once, `max_queue` more wait in
arrival order, the next is refused at once; a cancel while waiting frees the place; generated
interleavings of reserve, wait, cancel and release keep every count right."""

import random
import threading
import time

import pytest

from core.domain.errors import DomainError
from core.service.admission import Admission


def test_capacity_run_max_queue_wait_and_the_next_is_refused_at_once():
    admission = Admission(lambda: 2, max_queue=1)
    places = [admission.reserve() for _ in range(3)]
    with pytest.raises(DomainError) as refused:
        admission.reserve()
    assert refused.value.code == "QUEUE_FULL" and refused.value.details == {"max_queue": 1}
    places[0].wait(), places[1].wait()
    assert (admission.running, admission.waiting) == (2, 1)
    started = threading.Event()
    waiter = threading.Thread(target=lambda: (places[2].wait(), started.set()))
    waiter.start()
    assert not started.wait(0.3)  # no slot: it waits
    places[0].release()
    assert started.wait(5) and (admission.running, admission.waiting) == (2, 0)
    places[0].release()  # twice is once
    assert admission.reserve() is not None  # a place again


def test_the_waiting_go_in_arrival_order():
    admission = Admission(lambda: 1, max_queue=5)
    first = admission.reserve()
    first.wait()
    order, threads = [], []
    for i in range(5):
        place = admission.reserve()

        def run(place=place, i=i):
            place.wait()
            order.append(i)
            place.release()
        threads.append(threading.Thread(target=run))
        threads[-1].start()
        time.sleep(0.05)  # each is queued before the next arrives
    first.release()
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2, 3, 4]


def test_a_cancel_while_waiting_gives_the_place_up_and_the_next_goes():
    admission = Admission(lambda: 1, max_queue=2)
    busy = admission.reserve()
    busy.wait()
    gone, kept = admission.reserve(), admission.reserve()
    cancel = threading.Event()
    result = []
    t = threading.Thread(target=lambda: result.append(gone.wait(cancel)))
    t.start()
    time.sleep(0.1)
    cancel.set()
    t.join(5)
    assert not gone.running and result and result[0] >= 0.1
    gone.release()
    busy.release()
    kept.wait()
    assert kept.running and (admission.running, admission.waiting) == (1, 0)


def test_a_queue_of_zero_refuses_all_but_the_batch_and_a_negative_one_is_an_error():
    admission = Admission(lambda: 1, max_queue=0)
    admission.reserve()
    with pytest.raises(DomainError):
        admission.reserve()
    with pytest.raises(ValueError):
        Admission(lambda: 1, max_queue=-1)


def test_generated_interleavings_keep_the_counts_right():
    rng = random.Random(3)
    for trial in range(30):
        capacity, max_queue = rng.randint(1, 4), rng.randint(0, 4)
        admission = Admission(lambda: capacity, max_queue)
        peak, done, lock = [0], [], threading.Lock()

        def request(seed):
            r = random.Random(seed)
            try:
                place = admission.reserve()
            except DomainError:
                done.append("refused")
                return
            cancel = threading.Event()
            if r.random() < 0.2:
                cancel.set()
            place.wait(cancel)
            with lock:
                peak[0] = max(peak[0], admission.running)
            time.sleep(r.random() * 0.01)
            done.append("ran" if place.running else "cancelled")
            place.release()
        threads = [threading.Thread(target=request, args=(rng.random(),)) for _ in range(rng.randint(1, 12))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert len(done) == len(threads) and peak[0] <= capacity
        assert (admission.running, admission.waiting) == (0, 0)
        if len(threads) <= capacity + max_queue:  # room for all: none refused
            assert done.count("refused") == 0
