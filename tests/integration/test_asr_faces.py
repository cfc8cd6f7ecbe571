"""The ASR pass on the other faces: gRPC over a real loopback channel (a scripted transcriber
in the container), the RunPod worker through runpod's real local API with a real tiny Whisper,
and captions stored next to the audio in a real S3 server."""

import json

import pytest
from dependency_injector import providers

from adapters.fake import FakeSpeechEngine, FakeTranscriber, InMemoryVoiceLibrary
from adapters.grpc.messages import message_from_request, request_from_message
from adapters.whisper.wer import error_rate
from core.domain.audio import WavEncoder
from core.domain.events import AudioStored, SpeechCompleted
from core.domain.request import OutputTarget, Sampling, SpeechRequest
from core.domain.verification import Timestamps, Verification, VerifyMode
from core.service.archive import AudioArchive
from core.service.generate_speech import GenerateSpeech
from core.service.verification import Asr
from higgs_tts.v1 import speech_pb2 as pb
from tests.integration.grpc_helpers import collect, domain_code, domain_details, kinds
from tests.integration.runpod_helpers import WorkerProcess, guarded_env

TEXT = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november " * 2
SAMPLING = pb.Sampling(seed=3, max_new_tokens=150)


@pytest.fixture
def transcriber():
    return FakeTranscriber(["wrong words entirely", "alpha bravo", "x"])


@pytest.fixture
def container(container, transcriber):
    container.transcriber.override(providers.Object(transcriber))
    return container


def test_stream_speech_sends_each_chunks_verdict(stub, transcriber):
    request = pb.SpeechRequest(text=TEXT, sampling=SAMPLING, timestamps=pb.TIMESTAMPS_WORD,
                               verification=pb.Verification(mode=pb.VERIFY_MODE_ON, max_wer=0.5, max_attempts=2))
    messages, error = collect(stub.StreamSpeech(request, timeout=60))
    assert error is None, error
    names = kinds(messages)
    verified = [m.verified for m in messages if m.WhichOneof("event") == "verified"]
    assert len(verified) >= 2 and names.index("verified") < names.index("audio")  # held: verdict first
    assert verified[0].attempts == 2 and verified[0].kept in (1, 2)
    completed = messages[-1].completed
    from google.protobuf import json_format

    meta = json_format.MessageToDict(completed.metadata)
    assert [v["chunk"] for v in meta["verification"]] == [v.chunk for v in verified]
    assert meta["words"] == [{"word": w.word, "start": pytest.approx(w.start), "end": pytest.approx(w.end)}
                             for v in verified for w in v.words]
    assert len(transcriber.calls) == sum(v.attempts for v in verified)


@pytest.mark.parametrize("request_fields,field", [
    ({"verification": pb.Verification(mode=7)}, "verification.mode"),
    ({"timestamps": 9}, "timestamps"),
    ({"verification": pb.Verification(mode=pb.VERIFY_MODE_ON, max_wer=-0.1)}, "verification.max_wer"),
    ({"verification": pb.Verification(mode=pb.VERIFY_MODE_ON, max_attempts=99)}, "verification.max_attempts"),
])
def test_bad_verification_fields_are_invalid_argument(stub, request_fields, field):
    _, error = collect(stub.StreamSpeech(pb.SpeechRequest(text="hi", **request_fields), timeout=10))
    assert domain_code(error) == "INVALID_VERIFICATION" and domain_details(error)["field"] == field


@pytest.mark.parametrize("verification,timestamps", [
    (Verification(), Timestamps.NONE), (Verification(VerifyMode.ON, 0.0, 5), Timestamps.WORD),
    (Verification(VerifyMode.REPORT, 1.0, None), Timestamps.NONE), (Verification(VerifyMode.OFF), Timestamps.WORD),
    (Verification(None, 0.3, 1), Timestamps.NONE),
])
def test_the_client_message_carries_every_field_there_and_back(verification, timestamps):
    request = SpeechRequest("hi", verification=verification, timestamps=timestamps)
    back = request_from_message(message_from_request(request))
    assert back.verification == verification and back.timestamps == timestamps


def test_runpod_jobs_verify_and_store_captions_next_to_the_audio(demo_bundle, demo_asr, tmp_path):
    env = guarded_env(tmp_path, MODEL_PATH=str(demo_bundle.root), HIGGS_STORE="local", OUTPUT_DIR=str(tmp_path / "out"),
                      HIGGS_ASR_MODEL=str(demo_asr), HIGGS_VERIFY="report")
    worker = WorkerProcess(tmp_path, env).wait_api()
    try:
        body = worker.runsync({"transcript": "One two three. Four five six.", "seed": 2, "max_new_tokens": 60,
                               "chunk_method": "word", "chunk_max_word_num": 3, "timestamps": "word",
                               "s3_bucket": "tts-out", "s3_key": "asr/a.wav"})
        output = body["output"]
        assert output["success"] is True, output
        meta = output["metadata"]
        assert len(meta["verification"]) == 2  # HIGGS_VERIFY=report: the default for jobs that leave it
        assert meta["captions_key"] == "asr/a.wav.vtt" and isinstance(meta["words"], list)
        vtt = tmp_path / "out" / "tts-out" / "asr" / "a.wav.vtt"
        assert vtt.read_text().startswith("WEBVTT")
        record = json.loads((tmp_path / "out" / "tts-out" / "asr" / "a.wav.json").read_text())
        assert record["captions"]["key"] == "asr/a.wav.vtt" and len(record["verification"]) == 2
        bad = worker.runsync({"transcript": "Hi.", "verify": "sometimes"})["output"]
        assert bad["success"] is False and bad["error"]["code"] == "INVALID_VERIFICATION"
        off = worker.runsync({"transcript": "Hi.", "seed": 1, "max_new_tokens": 30, "verify": False})["output"]
        assert off["success"] is True and "verification" not in off["metadata"]
    finally:
        worker.stop()
    assert worker.violations() == "", worker.violations()


def test_captions_go_next_to_the_audio_in_s3(seaweed, s3_bucket):
    from tests.integration.test_s3_store import store_for

    store = store_for(seaweed.endpoint)
    use_case = GenerateSpeech(FakeSpeechEngine(), InMemoryVoiceLibrary.with_demo_voices(), WavEncoder(),
                              AudioArchive(store),
                              asr=Asr(FakeTranscriber(["alpha bravo charlie"]), error_rate))
    events = list(use_case(SpeechRequest(TEXT, sampling=Sampling(seed=1, max_new_tokens=150), timestamps="word",
                                         output=OutputTarget(s3_bucket, "captions/x.wav"))))
    stored = next(e for e in events if isinstance(e, AudioStored))
    assert isinstance(events[-1], SpeechCompleted) and stored.captions_key == "captions/x.wav.vtt"
    vtt = store.get(s3_bucket, "captions/x.wav.vtt").decode()
    assert vtt.startswith("WEBVTT") and "alpha bravo charlie" in vtt
    record = json.loads(store.get(s3_bucket, "captions/x.wav.json"))
    assert record["captions"] == {"key": "captions/x.wav.vtt", "format": "vtt"}


def test_the_stream_command_sends_the_flags_and_prints_the_verdicts(server, tmp_path, capsys):
    from tests.integration.grpc_helpers import stream_cli

    code, summary = stream_cli(capsys, "--target", server.address, "--text", TEXT, "--seed", "3",
                               "--max-new-tokens", "150", "--verify", "report", "--timestamps", "word",
                               "--out", str(tmp_path / "x.wav"))
    assert code == 0, summary
    assert [v["chunk"] for v in summary["verification"]] == list(range(len(summary["verification"])))
    assert len(summary["verification"]) >= 2 and all(v["attempts"] == 1 for v in summary["verification"])
    assert isinstance(summary["words"], list)
