"""A session's text feed: segments in order, a blocked engine woken by text, done or a stop;
barge-in drops what waits and text after it starts afresh; the limits."""

import threading
import time

import pytest

from core.domain.errors import DomainError
from core.service.text_feed import TextFeed


def test_segments_come_in_order_and_done_ends_them():
    feed = TextFeed()
    feed.append("One sentence here. Two")
    assert feed.next(lambda: False) == "One sentence here."
    assert feed.more()
    feed.done()
    assert feed.next(lambda: False) == "Two"
    assert feed.next(lambda: False) is None and not feed.more()
    assert feed.spoken() == "One sentence here. Two"
    assert feed.segment(1).index == 1 and feed.segments_taken == 2


def test_a_waiting_engine_wakes_for_text_and_for_a_stop():
    feed = TextFeed()
    got = []
    reader = threading.Thread(target=lambda: got.append(feed.next(lambda: False)))
    reader.start()
    time.sleep(0.1)
    assert reader.is_alive()  # nothing to say yet
    feed.append("Now. Then")
    reader.join(2)
    assert got == ["Now."]
    stop = threading.Event()
    waiter = threading.Thread(target=lambda: got.append(feed.next(stop.is_set)))
    waiter.start()
    stop.set()
    waiter.join(2)
    assert got[-1] is None and not waiter.is_alive()


def test_a_cancel_interrupts_drops_what_waits_and_later_text_starts_afresh():
    feed = TextFeed()
    feed.append("First one. Second sentence is queued and waits here for a while. Third")
    assert feed.next(lambda: False) == "First one."
    assert not feed.interrupted()
    dropped = feed.cancel()
    assert feed.interrupted()
    assert " ".join(dropped) == "Second sentence is queued and waits here for a while. Third"
    feed.append("Fresh start. ")
    feed.done()
    assert feed.next(lambda: False) == "Fresh start."
    assert not feed.interrupted()  # the new segment is not cut by the old cancel


def test_the_limits():
    feed = TextFeed(max_chars=10)
    feed.append("12345")
    with pytest.raises(DomainError) as too_long:
        feed.append("123456")
    assert too_long.value.code == "TEXT_TOO_LONG"
    feed.done()
    with pytest.raises(DomainError):
        feed.append("x")
