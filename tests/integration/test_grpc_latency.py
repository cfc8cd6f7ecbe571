"""The acceptance for streaming latency: for a ~60-word text, the first audio reaches the
client well before half of the whole call's time."""

import wave

import pytest

from adapters.fake import FakeSpeechEngine
from adapters.higgs import HiggsSpeechEngine
from tests.integration.grpc_helpers import stream_cli

SIXTY_WORDS = (
    "The morning train left the valley at seven, carrying farmers, students and a tired "
    "conductor who hummed old songs between stations. Outside, fog lifted from the river and "
    "the hills turned green and gold. By noon the city appeared, loud and very bright, and "
    "everyone stepped onto the platform with somewhere to be and something new to say to someone."
)

# The engines this runs on: the real engine on the demo bundle, and the fake at a fixed pace
# per frame (the ratio first chunk / total depends on frames per chunk, not on the pace).
LATENCY_ENGINES = {
    "fake-paced": lambda request: FakeSpeechEngine(step_delay=0.004),
    "higgs-demo": lambda request: HiggsSpeechEngine(request.getfixturevalue("demo_bundle"), device="cpu"),
}


@pytest.fixture(params=sorted(LATENCY_ENGINES))
def engine(request):
    engine = LATENCY_ENGINES[request.param](request)
    yield engine
    engine.close()


def test_stream_first_chunk_is_well_under_half_the_total(server, tmp_path, capsys):
    assert 55 <= len(SIXTY_WORDS.split()) <= 65
    out = tmp_path / "sixty.wav"
    code, summary = stream_cli(
        capsys, "--target", server.address, "--text", SIXTY_WORDS, "--voice", "belinda",
        "--scene", "A quiet studio.", "--seed", "7", "--out", str(out),
    )
    assert code == 0 and summary["success"] is True
    assert summary["chunks"] >= 10
    assert 0 < summary["first_chunk_s"] < summary["total_s"] / 4
    with wave.open(str(out)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (24000, 1, 2)
        assert wav.getnframes() == round(summary["audio_s"] * 24000)
    assert summary["audio_s"] == pytest.approx(summary["frames"] / 25)
    assert len(summary["trace_id"]) == 32
