"""The Transcriber contract, for every implementation: the fake and Whisper (a tiny random
one, through the real loading code)."""

import math
import threading
from array import array

import pytest

from adapters.fake import FakeTranscriber
from core.ports.transcriber import Transcriber, Transcript


def _whisper(request):
    from adapters.whisper import WhisperTranscriber

    return WhisperTranscriber(request.getfixturevalue("demo_asr"), max_wait=0.02)


TRANSCRIBERS = {"fake": lambda request: FakeTranscriber(["one two three"]), "whisper": _whisper}


@pytest.fixture(params=sorted(TRANSCRIBERS))
def transcriber(request) -> Transcriber:
    made = TRANSCRIBERS[request.param](request)
    assert isinstance(made, Transcriber)
    return made


def tone(seconds: float, rate: int = 24000) -> array:
    n = int(seconds * rate)
    return array("f", (0.3 * math.sin(2 * math.pi * 220 * i / rate) for i in range(n)))


def test_warm_up_makes_it_ready_and_it_describes_itself(transcriber):
    transcriber.warm_up()
    assert transcriber.is_ready()
    assert isinstance(transcriber.describe()["asr_model"], str)


@pytest.mark.parametrize("seconds,rate", [(0.0, 24000), (0.02, 24000), (0.5, 24000), (2.0, 16000), (1.0, 44100)])
def test_every_length_and_rate_gives_a_transcript_with_words_inside_the_audio(transcriber, seconds, rate):
    transcriber.warm_up()
    heard = transcriber.transcribe(tone(seconds, rate), rate, words=True)
    assert isinstance(heard, Transcript) and isinstance(heard.text, str)
    last = 0.0
    for w in heard.words:
        assert w.word.strip() and last - 1e-3 <= w.start <= w.end <= seconds + 1e-3
        last = w.start


def test_without_words_there_are_none(transcriber):
    transcriber.warm_up()
    assert transcriber.transcribe(tone(1.0), 24000, words=False).words == ()


def test_calls_from_many_threads_each_get_their_own_answer(transcriber):
    transcriber.warm_up()
    lengths = [0.3, 0.6, 1.2, 0.9]
    out = [None] * len(lengths)

    def go(i):
        out[i] = transcriber.transcribe(tone(lengths[i]), 24000, words=True)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(lengths))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for seconds, heard in zip(lengths, out):
        assert isinstance(heard, Transcript)
        assert all(w.end <= seconds + 1e-3 for w in heard.words)
