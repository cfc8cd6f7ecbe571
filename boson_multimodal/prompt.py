"""The Higgs Audio prompt: Llama-3 style turns, a system instruction with the scene folded in,
voice prompts as earlier user/assistant turns (transcript, then its audio), the text to speak.

Audio in the prompt is its delayed frames; the text holds one placeholder per frame:
`<|audio_out_bos|>`, (frames - 7) x `<|AUDIO_OUT|>`, 7 x the delay token, `<|audio_eos|>`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from boson_multimodal.codec import delay_frames
from boson_multimodal.sampling import CodeIds, Prompt
from boson_multimodal.transcript import speaker_tags

SYSTEM_INSTRUCTION = "Generate audio following instruction."
# the instruction the model was trained with for dialogues when no voice is given
MULTI_SPEAKER_INSTRUCTION = (
    "You are an AI assistant designed to convert text into speech.\n"
    "If the user's message includes a [SPEAKER*] tag, do not read out the tag and generate speech "
    "for the following text, using the specified voice.\n"
    "If no speaker tag is present, select a suitable voice on your own."
)
DEFAULT_SPEAKER_VOICES = ("feminine", "masculine")  # alternating, in tag order


@dataclass(frozen=True)
class Turn:
    role: str  # system | user | assistant
    text: str | None = None
    codes: torch.Tensor | None = None  # [T, K] audio codes (assistant turns)
    scene: str | None = None  # system turn: the scene description, between its markers


def system_turn(scene: str | None) -> Turn:
    """The instruction, then `<|scene_desc_start|>\n{scene}\n<|scene_desc_end|>` when a scene
    is given. The markers are control tokens; the scene itself is the user's text."""
    return Turn("system", SYSTEM_INSTRUCTION, scene=scene.strip() if scene and scene.strip() else None)


def conversation(scene: str | None, voices: Sequence[tuple[str, torch.Tensor]], text: str) -> list[Turn]:
    """The turns before the text, by the reference implementation's rules:
    - with voices: a system turn only when there is a scene, then the voice turns;
    - without voices, when the text tags two or more speakers: the multi-speaker instruction,
      with the scene and a default voice per tag (feminine, masculine, ...) in the scene block;
    - otherwise the plain instruction, with the scene when there is one."""
    scene = scene.strip() if scene and scene.strip() else None
    if voices:
        return ([system_turn(scene)] if scene else []) + voice_turns(voices, multi_speaker=len(voices) > 1)
    tags = speaker_tags(text)
    if len(tags) > 1:
        cast = "\n".join(f"{tag}: {DEFAULT_SPEAKER_VOICES[i % 2]}" for i, tag in enumerate(tags))
        return [Turn("system", MULTI_SPEAKER_INSTRUCTION, scene="\n\n".join(filter(None, [scene, cast])))]
    return [system_turn(scene)]


def voice_turns(voices: Sequence[tuple[str, torch.Tensor]], multi_speaker: bool) -> list[Turn]:
    """One user turn (the clip's transcript, tagged with its speaker when several speak) and one
    assistant turn (the clip's codes) per voice, in speaker order."""
    turns: list[Turn] = []
    for i, (transcript, codes) in enumerate(voices):
        text = f"[SPEAKER{i}] {transcript}" if multi_speaker else transcript
        turns += [Turn("user", text), Turn("assistant", codes=codes)]
    return turns


class PromptBuilder:
    def __init__(self, tokenizer, config) -> None:
        self.tokenizer = tokenizer
        self.ids = CodeIds(config)
        token = tokenizer.convert_tokens_to_ids
        self.special = {
            name: token(name)
            for name in (
                "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                "<|audio_out_bos|>", "<|audio_eos|>", "<|scene_desc_start|>", "<|scene_desc_end|>",
            )
        }
        self.audio_token = int(config.audio_token_id)
        self.delay_token = int(config.audio_delay_token_id)
        unknown = [name for name, i in self.special.items() if i is None or i == tokenizer.unk_token_id]
        if unknown:
            raise ValueError(f"the text tokenizer lacks the special tokens {unknown}")

    def text_tokens(self, text: str) -> int:
        """Tokens `text` adds as a turn's content (a prompt is exactly its turns' sum)."""
        return len(self._text(text)) if text else 0

    def _text(self, text: str) -> list[int]:
        # user text never becomes control tokens: "<|eot_id|>" typed by a user stays text
        return self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]

    def build(self, turns: Sequence[Turn], prefix_turns: int = 0) -> Prompt:
        """The prompt for `turns`, then the generation prompt. The first `prefix_turns` turns are
        marked as its shareable prefix (each turn's tokens end at its own end-of-turn token, so
        the prefix's tokens are the same whatever follows)."""
        s = self.special
        k = self.ids.num_codebooks
        ids: list[int] = [s["<|begin_of_text|>"]]
        audio: list[torch.Tensor] = []
        prefix = (0, 0)
        for index, turn in enumerate(list(turns) + [Turn("assistant")]):
            if index == prefix_turns and prefix_turns:
                prefix = (len(ids), sum(a.shape[0] for a in audio))
            ids += [s["<|start_header_id|>"], *self._text(turn.role), s["<|end_header_id|>"]]
            if turn.codes is not None:
                frames = delay_frames(turn.codes.long(), self.ids.bos, self.ids.eos)
                audio.append(frames)
                ids += self._text("\n\n") + [s["<|audio_out_bos|>"]]
                ids += [self.audio_token] * (frames.shape[0] - (k - 1)) + [self.delay_token] * (k - 1)
                ids += [s["<|audio_eos|>"], s["<|eot_id|>"]]
            elif turn.text is not None:
                # the header's blank line and the content are tokenized apart, as upstream does
                ids += self._text("\n\n")
                if turn.scene:  # upstream tokenizes the content whole: pieces end at the markers
                    ids += self._text(turn.text + "\n\n") + [s["<|scene_desc_start|>"]]
                    ids += self._text(f"\n{turn.scene}\n") + [s["<|scene_desc_end|>"]]
                else:
                    ids += self._text(turn.text)
                ids += [s["<|eot_id|>"]]
            else:  # the generation prompt: the model continues with audio
                ids += self._text("\n\n") + [s["<|audio_out_bos|>"]]
        frames = torch.cat(audio) if audio else torch.empty((0, k), dtype=torch.long)
        return Prompt(torch.tensor([ids], dtype=torch.long), frames, *prefix)

    def render(self, prompt: Prompt) -> str:
        """The prompt as text, for logs and parity checks."""
        return self.tokenizer.decode(prompt.input_ids[0].tolist(), skip_special_tokens=False)
