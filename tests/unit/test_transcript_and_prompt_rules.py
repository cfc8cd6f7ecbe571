"""The reference implementation's transcript normalisation and prompt rules, case by case (the
upstream parity fixtures check the resulting tokens for the prompt matrix)."""

import itertools

import pytest
import torch

from boson_multimodal.prompt import MULTI_SPEAKER_INSTRUCTION, SYSTEM_INSTRUCTION, conversation
from boson_multimodal.transcript import normalize_transcript, speaker_tags


@pytest.mark.parametrize("text, expected", [
    ("Hello there", "Hello there."),
    ("Hello there!", "Hello there!"),
    ("Is it?", "Is it?"),
    ("a list,", "a list,"),
    ('He said "hi"', 'He said "hi"'),
    ("it's 'quoted'", "it's 'quoted'"),
    ("(aside) words", "aside words."),
    ("It is 21°C or 70°F", "It is 21 degrees Celsius or 70 degrees Fahrenheit."),
    ("你好，世界。", "你好, 世界."),
    ("wait…", "wait..."),
    ("“quote”", '"quote"'),
    ("ha [laugh]", "ha <SE>[Laughter]</SE>"),
    ("[music start] la la [music end]", "<SE_s>[Music]</SE_s> la la <SE_e>[Music]</SE_e>"),
    ("[humming start] hm", "<SE>[Humming]</SE> hm."),
    ("[cough] [applause] [cheering]", "<SE>[Cough]</SE> <SE>[Applause]</SE> <SE>[Cheering]</SE>"),
    ("  spaced    out  \n\n\n  lines  here ", "spaced out\nlines here."),
    ("[SPEAKER0] Hi\n\n[SPEAKER1] Yo", "[SPEAKER0] Hi\n[SPEAKER1] Yo."),
    ("tab\tand\u00a0nbsp", "tab and nbsp."),
])
def test_normalisation(text, expected):
    assert normalize_transcript(text) == expected


def test_normalisation_is_idempotent_on_generated_texts():
    pieces = ["Hello", "(x)", "，", "21°C", "[laugh]", "\n\n", "  ", "?", "…", "[SPEAKER1]", "é", "'"]
    for combo in itertools.product(pieces, repeat=3):
        once = normalize_transcript(" ".join(combo))
        assert normalize_transcript(once) == once
        assert "(" not in once and ")" not in once and "\n\n" not in once


def test_speaker_tags_sort_as_strings():
    assert speaker_tags("[SPEAKER2] a [SPEAKER10] b [SPEAKER2] c") == ["SPEAKER10", "SPEAKER2"]
    assert speaker_tags("no tags [speaker0]") == []


CODES = torch.zeros((3, 8), dtype=torch.long)
TAGGED = "[SPEAKER0] Hi. [SPEAKER1] Hello."


@pytest.mark.parametrize("voices, scene, text",
                         list(itertools.product((0, 1, 2), ("A room.", None, "  "), (TAGGED, "Hi."))))
def test_conversation_rules(voices, scene, text):
    references = [(f"clip {i}", CODES) for i in range(voices)]
    turns = conversation(scene, references, text)
    has_scene = bool(scene and scene.strip())
    if voices:
        system = turns[:1] if turns[0].role == "system" else []
        assert len(system) == (1 if has_scene else 0)  # no system turn without a scene
        if system:
            assert system[0].text == SYSTEM_INSTRUCTION and system[0].scene == scene.strip()
        users = [t.text for t in turns if t.role == "user"]
        assert users == ([f"[SPEAKER{i}] clip {i}" for i in range(voices)] if voices > 1 else ["clip 0"])
        assert [t.role for t in turns[len(system):]] == ["user", "assistant"] * voices
    elif text == TAGGED:
        (system,) = turns
        assert system.text == MULTI_SPEAKER_INSTRUCTION
        cast = "SPEAKER0: feminine\nSPEAKER1: masculine"
        assert system.scene == (f"{scene.strip()}\n\n{cast}" if has_scene else cast)
    else:
        (system,) = turns
        assert system.text == SYSTEM_INSTRUCTION and system.scene == (scene.strip() if has_scene else None)


def test_default_voices_alternate_in_tag_order():
    (system,) = conversation(None, [], "[SPEAKER2] a [SPEAKER0] b [SPEAKER10] c")
    assert system.scene == "SPEAKER0: feminine\nSPEAKER10: masculine\nSPEAKER2: feminine"
