"""The playground page in a real headless browser (Debian's chromium, driven over the DevTools
protocol) against a real server on the demo bundle: every control, the errors as the API gives
them, and the layout on a wide and a narrow screen, compared with a screenshot."""

import json
import os
import re
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.http_helpers import HttpServer

LAYOUTS = Path(__file__).with_name("playground_layout")
READY = "window.playground && window.playground.ready !== null"
SPEECH_BODIES = """(() => {  // what the page sends, recorded on its way out
  window.sent = [];
  const fetch0 = window.fetch;
  window.fetch = (url, init) => {
    if (String(url).endsWith('/v1/audio/speech')) window.sent.push(JSON.parse(init.body));
    return fetch0(url, init);
  };
  return true;
})()"""


@pytest.fixture(scope="module")
def server(demo_bundle, tmp_path_factory):
    srv = HttpServer(tmp_path_factory.mktemp("playground"), MODEL_PATH=str(demo_bundle.root), HIGGS_STORE="none")
    yield srv
    srv.stop()


def opened(browser, server, width=1280, height=900):
    browser.viewport(width, height)
    browser.open(server.base + "/", READY)
    browser.wait("window.playground.voices.length > 0")
    return browser


def generate(browser, text, **controls):
    for selector, value in controls.items():
        browser.set_value("#" + selector, value, "change" if selector in ("voice", "format") else "input")
    browser.set_value("#text", text)
    browser.click("#play")
    phase = browser.wait("['done', 'error', 'stopped'].includes(window.playground.phase) && "
                         "window.playground.phase")
    state = browser.eval("({...window.playground, live: null})")
    assert phase == "done", state
    return browser.wait("window.playground.digest && ({...window.playground, live: null})")


def download(browser):
    return bytes(browser.eval("fetch(document.getElementById('download').href).then(r => r.arrayBuffer())"
                              ".then(b => Array.from(new Uint8Array(b)))"))


def test_the_page_says_the_model_is_the_demo_bundle(browser, server):
    opened(browser, server)
    assert browser.eval("document.title") == "higgs-tts playground"
    assert browser.eval("window.playground.demo") is True
    notice = browser.eval("!document.getElementById('notice').hidden && document.getElementById('notice').textContent")
    assert "demo bundle" in notice and "noise" in notice
    assert browser.eval("document.getElementById('model').className") == "pill ready"
    assert "demo" in browser.eval("document.getElementById('model').textContent")
    assert {"belinda", "en_man"} <= set(browser.eval("window.playground.voices"))


def test_generate_plays_while_streaming_with_progress_waveform_and_level(browser, server):
    opened(browser, server)
    browser.eval("""(() => {  // every change to the two buttons, in order
        window.seen = [];
        const note = () => window.seen.push([document.getElementById('play').disabled,
                                             document.getElementById('stop').disabled]);
        for (const id of ['play', 'stop'])
          new MutationObserver(note).observe(document.getElementById(id), {attributes: true});
        return true; })()""")
    state = generate(browser, "The playground speaks while it generates. " * 3, voice="belinda", seed="7")
    assert state["samples"] > 24000 and state["chunks"] >= 2 and state["scheduled"] == state["chunks"]
    assert state["bytes"] == 2 * state["samples"] and state["requestId"] and state["stopReason"]
    seen = browser.eval("window.seen")
    assert [True, False] in seen and seen[-1] == [False, True]  # Play off and Stop on while generating; back after
    progress = browser.eval("document.getElementById('progress').textContent")
    seconds = state["samples"] / 24000
    assert f"{seconds:.1f} s generated" in progress and "real time" in progress and "first audio" in progress
    assert 0 < state["firstAudioS"] < 60 and state["rtf"] > 0
    inked = browser.eval("""(() => { const c = document.getElementById('wave');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; })()""")
    assert inked > 2000  # a waveform, not the bare centre line
    browser.wait("window.playground.levelPeak > 0", timeout=20)  # the meter moved while it played
    data = download(browser)
    assert data[:4] == b"RIFF" and len(data) == 44 + 2 * state["samples"]
    assert int.from_bytes(data[40:44], "little") == 2 * state["samples"]  # the sizes are the real ones
    assert browser.eval("document.getElementById('download').download") == "speech.wav"
    assert "Done" in browser.eval("document.getElementById('status').textContent")


def test_the_controls_reach_the_request_and_the_seed_repeats(browser, server):
    opened(browser, server)
    browser.eval(SPEECH_BODIES)
    browser.set_value("#temperature", "0.8")
    browser.set_value("#scene", "Audio is recorded in a large hall.")
    first = generate(browser, "Same seed, same audio.", voice="en_man", seed="11")
    again = generate(browser, "Same seed, same audio.")
    other = generate(browser, "Same seed, same audio.", seed="12")
    sent = browser.eval("window.sent")
    assert sent[0] == {"model": "higgs-audio-v2", "input": "Same seed, same audio.", "voice": "en_man",
                       "instructions": "Audio is recorded in a large hall.", "seed": 11, "temperature": 0.8,
                       "response_format": "pcm", "stream_format": "sse"}
    assert sent[2]["seed"] == 12
    assert first["digest"] == again["digest"] != other["digest"]
    assert browser.eval("document.getElementById('temperature-value').textContent") == "0.80"
    browser.click("#dice")
    assert re.fullmatch(r"\d+", browser.eval("document.getElementById('seed').value"))


@pytest.mark.parametrize("fmt, magic", [("mp3", (b"ID3", b"\xff\xfb", b"\xff\xf3")), ("opus", (b"OggS",)),
                                        ("aac", (b"\xff\xf1", b"\xff\xf9")), ("flac", (b"fLaC",)), ("pcm", None)])
def test_each_format_comes_whole_with_a_player_and_a_download(browser, server, fmt, magic):
    opened(browser, server)
    browser.eval(SPEECH_BODIES)
    state = generate(browser, "A format test.", voice="belinda", seed="3", format=fmt)
    sent = browser.eval("window.sent")[0]
    data = download(browser)
    assert browser.eval("document.getElementById('download').download") == "speech." + {"opus": "ogg"}.get(fmt, fmt)
    if magic is None:  # raw PCM is streamed and played as it comes, like WAV
        assert sent["response_format"] == "pcm" and len(data) == 2 * state["samples"] > 0
        assert browser.eval("document.getElementById('player').hidden")
        return
    assert sent["response_format"] == fmt and "stream_format" not in sent
    assert data.startswith(magic) and len(data) == state["bytes"] > 100
    assert browser.eval("!document.getElementById('player').hidden && document.getElementById('player').src")
    if fmt != "aac":  # what Debian's chromium decodes is drawn and counted
        assert state["samples"] > 0


def test_stop_ends_the_request_and_frees_the_buttons(browser, server):
    opened(browser, server)
    browser.set_value("#text", "This is a long text that keeps the model busy for a while. " * 40)
    browser.set_value("#seed", "5")
    browser.click("#play")
    browser.wait("window.playground.samples > 0")

    def busy():
        with urllib.request.urlopen(server.base + "/metrics", timeout=10) as response:
            text = response.read().decode()
        return float(re.search(r"^higgs_tts_slots_busy (\S+)$", text, re.M).group(1))
    assert busy() == 1  # still generating (40 sentences)
    browser.click("#stop")
    assert browser.eval("window.playground.phase") == "stopped"
    assert browser.eval("!document.getElementById('play').disabled && document.getElementById('stop').disabled")
    samples = browser.eval("window.playground.samples")
    browser.eval("new Promise(r => setTimeout(r, 1500)).then(() => true)")
    assert browser.eval("window.playground.samples") == samples  # nothing more arrives
    assert browser.eval("document.getElementById('status').textContent").startswith("Stopped after")
    assert browser.eval("document.getElementById('download').hidden")
    for _ in range(100):  # the server stopped generating for the closed connection
        if busy() == 0:
            break
        browser.eval("new Promise(r => setTimeout(r, 100)).then(() => true)")
    assert busy() == 0


def test_a_voice_is_uploaded_used_and_deleted_from_the_page(browser, server, tmp_path):
    clip = tmp_path / "clip.wav"
    t = np.arange(48000) / 24000
    sf.write(clip, 0.3 * np.sin(2 * np.pi * 220 * t), 24000)
    (tmp_path / "notes.wav").write_text("not audio")
    opened(browser, server)
    browser.eval(SPEECH_BODIES)
    browser.click("#upload summary")
    browser.click("#add-voice")  # no clip chosen
    assert "(field: file)" in browser.wait("document.getElementById('status').className === 'error' && "
                                           "document.getElementById('status').textContent")
    for clip_file, transcript, field in [(tmp_path / "notes.wav", "Words.", "file"), (clip, "", "transcript")]:
        browser.eval("document.getElementById('status').className = ''; true")
        browser.set_files("#voice-file", clip_file)
        browser.set_value("#voice-name", "page_voice")
        browser.set_value("#voice-transcript", transcript)
        browser.click("#add-voice")
        browser.wait("document.getElementById('status').className === 'error'")
        assert browser.eval("document.querySelector('#status code').textContent") == "INVALID_REFERENCE_AUDIO"
        assert f"(field: {field})" in browser.eval("document.getElementById('status').textContent")
        assert "page_voice" not in browser.eval("window.playground.voices")

    browser.set_files("#voice-file", clip)
    browser.set_value("#voice-name", "page_voice")
    browser.set_value("#voice-transcript", "A steady hum for two seconds.")
    browser.click("#add-voice")
    browser.wait("window.playground.voices.includes('page_voice')")
    assert browser.eval("document.getElementById('voice').value") == "page_voice"  # chosen once added
    assert "Added the voice page_voice" in browser.eval("document.getElementById('status').textContent")
    generate(browser, "Now in the new voice.")
    assert browser.eval("window.sent")[-1]["voice"] == "page_voice"

    browser.click("#delete-voice")
    assert browser.eval("document.getElementById('delete-voice').textContent") == "Sure?"
    assert "page_voice" in browser.eval("window.playground.voices")  # one click only asks
    browser.click("#delete-voice")
    browser.wait("!window.playground.voices.includes('page_voice')")
    assert browser.eval("document.getElementById('voice').value") == ""
    assert browser.eval("document.getElementById('delete-voice').disabled")
    with urllib.request.urlopen(server.base + "/v1/audio/voices", timeout=10) as response:
        assert "page_voice" not in {v["id"] for v in json.load(response)["data"]}


@pytest.mark.parametrize("field, value, code", [
    ("text", "", "INVALID_TRANSCRIPT"),
    ("voice", "nobody", "UNKNOWN_VOICE"),
    ("seed", "-1", "INVALID_SEED"),
])
def test_a_refused_request_is_shown_as_the_api_gives_it(browser, server, field, value, code):
    opened(browser, server)
    if field == "voice":  # a voice deleted by someone else after the list was loaded
        browser.eval("document.getElementById('voice').appendChild(new Option('nobody', 'nobody')); true")
    browser.set_value("#" + field, value, "change" if field == "voice" else "input")
    if field != "text":
        browser.set_value("#text", "Hello there.")
    browser.click("#play")
    browser.wait("window.playground.phase === 'error'")
    assert browser.eval("document.querySelector('#status code').textContent") == code
    assert browser.eval("document.getElementById('status').className") == "error"
    assert browser.eval("window.playground.error").startswith(code + ": ")
    assert browser.eval("!document.getElementById('play').disabled && document.getElementById('download').hidden")


def test_without_a_model_the_page_says_not_ready_and_shows_why_a_request_fails(browser, tmp_path):
    (tmp_path / "volume").mkdir()
    empty = HttpServer(tmp_path, MODEL_PATH=str(tmp_path / "volume"), HIGGS_STORE="none", ready_path="/health")
    try:
        browser.open(empty.base + "/", READY)
        assert browser.eval("window.playground.ready") is False
        assert "not ready" in browser.eval("document.getElementById('notice').textContent")
        assert browser.eval("document.getElementById('model').textContent") == "Not ready"
        browser.set_value("#text", "Hello there.")
        browser.click("#play")
        browser.wait("['done', 'error'].includes(window.playground.phase)")
        assert browser.eval("window.playground.phase") == "error"
        assert "not on the volume" in browser.eval("window.playground.error")
        assert "Done" not in browser.eval("document.getElementById('status').textContent")
    finally:
        empty.stop()


def test_entering_the_key_loads_the_voices_and_the_model(browser, tmp_path, demo_bundle):
    keyed = HttpServer(tmp_path, MODEL_PATH=str(demo_bundle.root), HIGGS_STORE="none", HIGGS_API_KEYS="s3cret")
    try:
        browser.open(keyed.base + "/", READY)
        browser.wait("window.playground.error")
        assert browser.eval("document.querySelector('#status code').textContent") == "UNAUTHENTICATED"
        assert browser.eval("window.playground.voices") == [] and browser.eval("window.playground.demo") is False
        assert "Enter the API key" in browser.eval("document.getElementById('notice').textContent")
        browser.set_value("#key", "s3cret", "change")
        browser.wait("window.playground.voices.length > 0 && window.playground.demo")
        assert browser.eval("document.getElementById('status').textContent") == ""  # the key error is gone
        assert browser.eval("localStorage.getItem('higgs-tts-key')") == "s3cret"
        state = generate(browser, "With the key.", voice="belinda", seed="1")
        assert state["samples"] > 0
    finally:
        keyed.stop()


def test_type_and_hear_speaks_each_sentence_while_the_rest_is_typed(browser, server):
    """Typed characters go over the WebSocket as they are typed; the first sentence is heard
    before the typing ends, every sentence comes back as a segment."""
    opened(browser, server)
    browser.set_value("#voice", "belinda", "change")
    browser.set_value("#seed", "7")
    browser.click("#tab-live")
    assert browser.eval("document.getElementById('text').value === '' && document.getElementById('play').hidden")
    assert browser.eval("!document.getElementById('finish').hidden && document.getElementById('format').disabled")
    typed = browser.eval("""(async () => {
        const text = "First I say this. Then I keep typing a second sentence, slowly. And a third one.";
        const area = document.getElementById('text');
        for (const ch of text) {
          area.value += ch;
          area.dispatchEvent(new Event('input'));
          await new Promise(r => setTimeout(r, 40));
        }
        return performance.now();
    })()""")
    first_audio = browser.wait("window.playground.live.firstAudio")
    assert first_audio < typed  # heard while still typing
    assert browser.eval("document.getElementById('tab-generate').disabled")  # no switching mid-session
    browser.click("#finish")
    phase = browser.wait("['done', 'error', 'closed'].includes(window.playground.live.phase) && "
                         "window.playground.live.phase")
    live = browser.eval("({...window.playground.live, ws: null})")
    assert phase == "done", live
    texts = [s["text"] for s in live["segments"]]
    assert texts[0] == "First I say this." and " ".join(texts).endswith("And a third one.")
    for before, after in zip(live["segments"], live["segments"][1:]):
        assert after["audio_start_ms"] == before["audio_end_ms"]
    assert live["segments"][-1]["audio_end_ms"] == round(live["samples"] * 1000 / 24000, 3)
    assert "Done" in browser.eval("document.getElementById('status').textContent")
    assert "s generated" in browser.eval("document.getElementById('progress').textContent")
    assert browser.eval("!document.getElementById('tab-generate').disabled")


CONTROLS = ["model", "notice", "text", "play", "stop", "wave", "progress", "voice", "delete-voice", "scene",
            "format", "temperature", "seed", "dice", "key"]
BOXES = """(() => Object.fromEntries(%s.map(id => {
    const r = document.getElementById(id).getBoundingClientRect();
    return [id, [r.left, r.top, r.right, r.bottom]]; })))()""" % json.dumps(CONTROLS)
INK = """(async (data, cols, rows) => {  // the screenshot, decoded by the browser: which cells hold anything
    const image = new Image(); image.src = 'data:image/png;base64,' + data; await image.decode();
    const c = document.createElement('canvas'); c.width = image.width; c.height = image.height;
    const g = c.getContext('2d'); g.drawImage(image, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data, w = c.width / cols, h = c.height / rows;
    const at = (x, y) => { const i = 4 * (y * c.width + x); return [d[i], d[i + 1], d[i + 2]]; };
    const out = [];  // ink: text, lines, controls, the waveform; not the page or the cards behind them
    for (let r = 0; r < rows; r++) { let line = '';
      for (let q = 0; q < cols; q++) { let ink = false;
        for (let y = Math.floor(r * h); y < Math.floor((r + 1) * h) && !ink; y++)
          for (let x = Math.floor(q * w); x < Math.floor((q + 1) * w) && !ink; x++) {
            const p = at(x, y); ink = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2] < 215; }
        line += ink ? '#' : '.'; }
      out.push(line); }
    return out; })"""


def overlaps(a, b):
    return a[0] < b[2] - 1 and b[0] < a[2] - 1 and a[1] < b[3] - 1 and b[1] < a[3] - 1


@pytest.mark.parametrize("screen, width, height", [("desktop", 1280, 900), ("phone", 390, 844)])
def test_the_layout_holds_on_a_wide_and_a_narrow_screen(browser, server, tmp_path, screen, width, height):
    """Nothing overlaps, nothing is cut off or scrolls sideways; the settings sit beside the text
    on a wide screen and below it on a phone; and the screenshot's grid of filled cells matches
    the one kept in tests/e2e/playground_layout (HIGGS_UPDATE_LAYOUT=1 rewrites it after a
    deliberate change: look at the screenshot first)."""
    opened(browser, server, width, height)
    browser.set_value("#voice", "belinda", "change")
    boxes = browser.eval(BOXES)
    assert browser.eval("document.documentElement.scrollWidth") <= width
    for name, box in boxes.items():
        assert 0 <= box[0] and box[2] <= width and box[2] > box[0] and box[3] > box[1], (name, box)
    pairs = [(a, b) for i, a in enumerate(CONTROLS) for b in CONTROLS[i + 1:] if overlaps(boxes[a], boxes[b])]
    assert pairs == []
    if screen == "desktop":
        assert boxes["voice"][0] > boxes["text"][2] and boxes["voice"][1] < boxes["text"][3]
    else:
        assert boxes["voice"][1] > boxes["progress"][3]
    shot = tmp_path / f"playground-{screen}.png"
    png = browser.screenshot(shot)
    import base64
    grid = browser.eval(f"{INK}({json.dumps(base64.b64encode(png).decode())}, 32, 24)")
    for name in ("play", "text", "voice", "wave", "format", "key"):  # what the boxes say is there is drawn
        left, top, right, bottom = boxes[name]
        if bottom <= height:
            cells = [grid[r][c] for r in range(int(top * 24 / height), int(bottom * 24 / height - 1e-9) + 1)
                     for c in range(int(left * 32 / width), int(right * 32 / width - 1e-9) + 1)]
            assert "#" in cells, (name, "\n".join(grid))
    kept = LAYOUTS / f"{screen}.txt"
    if os.environ.get("HIGGS_UPDATE_LAYOUT") == "1":
        kept.parent.mkdir(exist_ok=True)
        kept.write_text("\n".join(grid) + "\n")
    expected = kept.read_text().split()
    differ = sum(a != b for line, want in zip(grid, expected) for a, b in zip(line, want))
    assert differ <= 0.08 * 32 * 24, f"{differ} of {32 * 24} cells differ from {kept} (see {shot}):\n" + \
        "\n".join(grid)
