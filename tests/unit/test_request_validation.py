import pytest

from core.domain.errors import DomainError, ErrorType
from core.domain.request import (
    Chunking,
    InlineVoice,
    NamedVoice,
    OutputTarget,
    Sampling,
    SpeechRequest,
    parse_voice_list,
)


def code_of(build) -> str:
    with pytest.raises(DomainError) as info:
        build()
    assert info.value.type is ErrorType.VALIDATION
    return info.value.code


@pytest.mark.parametrize(
    "build, code",
    [
        (lambda: SpeechRequest(""), "INVALID_TRANSCRIPT"),
        (lambda: SpeechRequest("   \n"), "INVALID_TRANSCRIPT"),
        (lambda: SpeechRequest("x" * 10_001), "INVALID_TRANSCRIPT"),
        (lambda: SpeechRequest("bell \x07"), "INVALID_TRANSCRIPT"),
        (lambda: SpeechRequest(None), "INVALID_TRANSCRIPT"),
        (lambda: SpeechRequest("hi", scene_prompt="s" * 2001), "INVALID_SCENE_PROMPT"),
        (lambda: Sampling(temperature=0), "INVALID_TEMPERATURE"),
        (lambda: Sampling(temperature=2.01), "INVALID_TEMPERATURE"),
        (lambda: Sampling(temperature="hot"), "INVALID_TEMPERATURE"),
        (lambda: Sampling(top_k=0), "INVALID_TOP_K"),
        (lambda: Sampling(top_k=2.5), "INVALID_TOP_K"),
        (lambda: Sampling(top_k=True), "INVALID_TOP_K"),
        (lambda: Sampling(top_p=0), "INVALID_TOP_P"),
        (lambda: Sampling(top_p=1.5), "INVALID_TOP_P"),
        (lambda: Sampling(max_new_tokens=0), "INVALID_MAX_NEW_TOKENS"),
        (lambda: Sampling(max_new_tokens=8193), "INVALID_MAX_NEW_TOKENS"),
        (lambda: Sampling(seed=-1), "INVALID_SEED"),
        (lambda: Sampling(ras_win_len=-1), "INVALID_RAS"),
        (lambda: Sampling(ras_win_max_num_repeat=0), "INVALID_RAS"),
        (lambda: Chunking("sentence"), "INVALID_CHUNKING"),
        (lambda: Chunking("word", max_word_num=0), "INVALID_CHUNKING"),
        (lambda: Chunking("speaker", max_num_turns=0), "INVALID_CHUNKING"),
        (lambda: NamedVoice("../etc/passwd"), "INVALID_VOICE_NAME"),
        (lambda: NamedVoice("a" * 65), "INVALID_VOICE_NAME"),
        (lambda: NamedVoice(""), "INVALID_VOICE_NAME"),
        (lambda: parse_voice_list("belinda,,en_man"), "INVALID_VOICE_NAME"),
        (lambda: InlineVoice(b"", "text"), "INVALID_REFERENCE_AUDIO"),
        (lambda: InlineVoice(b"RIFF", ""), "INVALID_REFERENCE_AUDIO"),
        (lambda: InlineVoice(b"x" * (12 * 1024 * 1024 + 1), "t"), "INVALID_REFERENCE_AUDIO"),
        (lambda: OutputTarget("b", "k"), "INVALID_S3_BUCKET"),
        (lambda: OutputTarget("Upper-Case", "k"), "INVALID_S3_BUCKET"),
        (lambda: OutputTarget("bucket", "../escape.wav"), "INVALID_S3_KEY"),
        (lambda: OutputTarget("bucket", "a/../../b.wav"), "INVALID_S3_KEY"),
        (lambda: OutputTarget("bucket", "/abs/path.wav"), "INVALID_S3_KEY"),
        (lambda: OutputTarget("bucket", "C:/x.wav"), "INVALID_S3_KEY"),
        (lambda: OutputTarget("bucket", "a\\b.wav"), "INVALID_S3_KEY"),
        (lambda: OutputTarget("bucket", "a\nb.wav"), "INVALID_S3_KEY"),
        (lambda: OutputTarget("bucket", "a//b.wav"), "INVALID_S3_KEY"),
        (lambda: OutputTarget("bucket", ""), "INVALID_S3_KEY"),
        (lambda: OutputTarget("bucket", "k" * 1025), "INVALID_S3_KEY"),
        (lambda: SpeechRequest("hi", output_format="aiff"), "INVALID_OUTPUT_FORMAT"),
        (lambda: SpeechRequest("hi", request_id="has space"), "INVALID_REQUEST_ID"),
        (lambda: SpeechRequest("hi", voices=tuple(NamedVoice(f"v{i}") for i in range(9))), "INVALID_VOICE_NAME"),
    ],
)
def test_each_bad_input_has_its_code(build, code):
    assert code_of(build) == code


def test_limits_are_inclusive():
    assert SpeechRequest("x" * 10_000).text
    assert Sampling(temperature=2, top_p=1, max_new_tokens=8192, top_k=1).temperature == 2
    assert Sampling(max_new_tokens=1).max_new_tokens == 1
    assert OutputTarget("my-bucket", "a/b/c.wav").key == "a/b/c.wav"
    assert NamedVoice("A_z-0" + "x" * 59).name


def test_error_dict_has_the_seed_shape():
    with pytest.raises(DomainError) as info:
        Sampling(top_p=0)
    assert info.value.to_dict() == {
        "type": "validation_error",
        "message": "top_p must be a number in (0, 1]",
        "code": "INVALID_TOP_P",
        "details": {"field": "top_p", "constraint": "range=(0,1]", "actual": 0},
    }


def test_a_long_transcript_names_field_constraint_and_length():
    with pytest.raises(DomainError) as info:
        SpeechRequest("x" * 15000)
    assert info.value.details == {"field": "transcript", "constraint": "max_length=10000", "actual_length": 15000}


def test_voice_list_keeps_speaker_order():
    assert [v.name for v in parse_voice_list("belinda, en_man")] == ["belinda", "en_man"]
    assert [v.name for v in parse_voice_list("belinda,en_man")] == ["belinda", "en_man"]


def test_chunk_method_is_parsed_from_text():
    assert Chunking("word").method.value == "word"


def test_requests_are_immutable_and_get_an_id():
    a, b = SpeechRequest("hi"), SpeechRequest("hi")
    assert a.request_id != b.request_id
    with pytest.raises(Exception):
        a.text = "other"  # type: ignore[misc]


HOSTILE_TEXT = ["\ud800", "a\udfffb", "nul\x00", "bell\x07", "esc\x1b[31m", "del\x7f"]
TEXT_FIELDS = {
    "transcript": (lambda v: SpeechRequest(v), "INVALID_TRANSCRIPT"),
    "scene_prompt": (lambda v: SpeechRequest("hi", scene_prompt=v), "INVALID_SCENE_PROMPT"),
    "ref_audio_transcript": (lambda v: InlineVoice(b"RIFF", v), "INVALID_REFERENCE_AUDIO"),
    "s3_key": (lambda v: OutputTarget("bucket", f"k/{v}.wav"), "INVALID_S3_KEY"),
    "voice": (lambda v: NamedVoice(f"belinda{v}"), "INVALID_VOICE_NAME"),
    "voice list": (lambda v: parse_voice_list(f"belinda{v}"), "INVALID_VOICE_NAME"),
    "bucket": (lambda v: OutputTarget(f"bucket{v}", "k.wav"), "INVALID_S3_BUCKET"),
}


@pytest.mark.parametrize("field", list(TEXT_FIELDS))
@pytest.mark.parametrize("value", HOSTILE_TEXT)
def test_one_rule_for_every_text_field(field, value):
    """Lone surrogates and control characters are refused up front in every text field, with
    the field's own code and an error that serialises."""
    import json

    build, code = TEXT_FIELDS[field]
    with pytest.raises(DomainError) as info:
        build(value)
    assert info.value.code == code
    json.dumps(info.value.to_dict(), allow_nan=False).encode("utf-8")


@pytest.mark.parametrize("build, code", [
    (lambda: NamedVoice("belinda\n"), "INVALID_VOICE_NAME"),
    (lambda: NamedVoice("belinda "), "INVALID_VOICE_NAME"),
    (lambda: parse_voice_list("belinda "), "INVALID_VOICE_NAME"),
    (lambda: parse_voice_list("belinda\n"), "INVALID_VOICE_NAME"),
    (lambda: parse_voice_list(" belinda"), "INVALID_VOICE_NAME"),
    (lambda: OutputTarget("192.168.1.1", "k.wav"), "INVALID_S3_BUCKET"),
    (lambda: OutputTarget("10.0.0.1", "k.wav"), "INVALID_S3_BUCKET"),
    (lambda: OutputTarget("xn--bucket", "k.wav"), "INVALID_S3_BUCKET"),
    (lambda: OutputTarget("my-bucket-s3alias", "k.wav"), "INVALID_S3_BUCKET"),
    (lambda: OutputTarget("bucket", "x/weather.wav.json"), "INVALID_S3_KEY"),
    (lambda: OutputTarget("bucket", "x/weather.JSON"), "INVALID_S3_KEY"),
    (lambda: OutputTarget("bucket", "k.wav", overwrite="yes"), "INVALID_INPUT"),
    (lambda: Sampling(top_k=10**30), "INVALID_TOP_K"),
    (lambda: Sampling(top_k=1025), "INVALID_TOP_K"),
    (lambda: Sampling(ras_win_max_num_repeat=2**63), "INVALID_RAS"),
    (lambda: Sampling(ras_win_max_num_repeat=257), "INVALID_RAS"),
    (lambda: Sampling(ras_win_len=10**30), "INVALID_RAS"),
    (lambda: Sampling(seed=2**63), "INVALID_SEED"),
    (lambda: Sampling(temperature=float("nan")), "INVALID_TEMPERATURE"),
    (lambda: Sampling(temperature=float("inf")), "INVALID_TEMPERATURE"),
    (lambda: Sampling(top_p=float("nan")), "INVALID_TOP_P"),
    (lambda: Sampling(max_new_tokens=10**30), "INVALID_MAX_NEW_TOKENS"),
    (lambda: Chunking("word", max_word_num=10**30), "INVALID_CHUNKING"),
    (lambda: Chunking({"x": 1}), "INVALID_CHUNKING"),
    (lambda: SpeechRequest("hi", output_format=["wav"]), "INVALID_OUTPUT_FORMAT"),
])
def test_values_the_engine_cannot_take_are_refused_up_front(build, code):
    assert code_of(build) == code


def test_every_validation_error_has_the_design_keys():
    for build in [lambda: Sampling(top_k=0), lambda: SpeechRequest("x" * 10_001), lambda: NamedVoice("a b"),
                  lambda: OutputTarget("b", "k"), lambda: Chunking("zz"), lambda: SpeechRequest("\x00"),
                  lambda: InlineVoice(b"", "t"), lambda: SpeechRequest("hi", request_id="a b")]:
        with pytest.raises(DomainError) as info:
            build()
        assert {"field", "constraint"} <= set(info.value.details), info.value.details


def test_the_engine_bounds_are_accepted():
    assert Sampling(top_k=1024, ras_win_len=256, ras_win_max_num_repeat=256, seed=2**63 - 1).top_k == 1024
