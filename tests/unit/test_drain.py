"""A worker told to stop: the service takes no new request, the ones in flight finish for a
while, what is left is stopped with SHUTTING_DOWN (in the request's own event stream)."""

import threading
import time

from adapters.fake import FakeSpeechEngine, InMemoryVoiceLibrary
from adapters.soundfile import SoundfileEncoder
from core.domain.events import SpeechCompleted, SpeechFailed, SpeechStarted
from core.domain.request import SpeechRequest
from core.service import GenerateSpeech, SpeechService
from core.service.drain import Drain


def service(step_delay=0.002) -> tuple[SpeechService, FakeSpeechEngine]:
    engine = FakeSpeechEngine(step_delay=step_delay)
    engine.warm_up()
    voices = InMemoryVoiceLibrary.with_demo_voices()
    return SpeechService(GenerateSpeech(engine, voices, SoundfileEncoder()), engine, voices), engine


def test_a_request_after_the_shutdown_began_fails_at_once():
    speech, _ = service()
    assert speech.is_ready()
    assert speech.shut_down(0.0) == 0
    assert not speech.is_ready() and speech.shutting_down
    events = list(speech.speak(SpeechRequest("Hi.")))
    assert len(events) == 1 and isinstance(events[0], SpeechFailed) and events[0].error.code == "SHUTTING_DOWN"


def run_in_background(speech, text):
    events, started = [], threading.Event()

    def run():
        for event in speech.speak(SpeechRequest(text)):
            events.append(event)
            if isinstance(event, SpeechStarted):
                started.set()

    thread = threading.Thread(target=run)
    thread.start()
    assert started.wait(10)
    return events, thread


def test_requests_in_flight_finish_within_the_drain():
    speech, _ = service()
    events, thread = run_in_background(speech, "word " * 20)  # about 180 frames: 0.4 s
    assert speech.in_flight == 1
    assert speech.shut_down(30.0) == 0
    thread.join(10)
    assert isinstance(events[-1], SpeechCompleted) and speech.in_flight == 0


def test_what_runs_past_the_drain_is_stopped_with_shutting_down():
    speech, _ = service()
    events, thread = run_in_background(speech, "word " * 400)  # about 18 s
    started = time.monotonic()
    assert speech.shut_down(0.2) == 1
    assert time.monotonic() - started < 5
    thread.join(10)
    assert isinstance(events[-1], SpeechFailed) and events[-1].error.code == "SHUTTING_DOWN"
    assert "stopped" in events[-1].error.message and speech.in_flight == 0


def test_a_request_that_fails_on_its_own_keeps_its_error_during_a_shutdown():
    drain = Drain()
    cancel = threading.Event()
    ticket = drain.admit(cancel)
    drain.release(ticket)
    assert drain.close(0.0) == 0 and not drain.stopped(ticket) and not cancel.is_set()
