"""The playground page in a real headless browser (Debian's chromium, driven over the DevTools
protocol): it loads, lists the voices, and a request made through it streams audio that the
page schedules for playback piece by piece and offers as a WAV download."""

import json
import shutil
import subprocess
import time
import urllib.request

import pytest
from websockets.sync.client import connect

from tests.http_helpers import HttpServer

BROWSER_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-default-apps",
    "--disable-extensions", "--autoplay-policy=no-user-gesture-required", "--mute-audio",
    # nothing but loopback resolves: the browser reaches no other address
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", "--remote-debugging-port=0",
]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Debian's chromium is needed for the playground test: `make test` installs it when run as "
                    "root (apt-get install chromium)")
    return path


class Page:
    def __init__(self, ws) -> None:
        self.ws = ws
        self.next_id = 0

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message["result"]

    def eval(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def wait(self, expression: str, timeout: float = 90.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {expression}")


@pytest.fixture
def browser(tmp_path):
    profile = tmp_path / "profile"
    proc = subprocess.Popen([chromium(), *BROWSER_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not active.exists() or not active.read_text().strip():
            assert proc.poll() is None and time.monotonic() < deadline, "chromium did not start"
            time.sleep(0.1)
        port = int(active.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            target = next(t for t in json.load(response) if t["type"] == "page")
        with connect(target["webSocketDebuggerUrl"], max_size=None, open_timeout=10) as ws:
            yield Page(ws)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def server(demo_bundle, tmp_path_factory):
    srv = HttpServer(tmp_path_factory.mktemp("playground"), MODEL_PATH=str(demo_bundle.root), HIGGS_STORE="none")
    yield srv
    srv.stop()


def test_the_playground_streams_plays_and_offers_the_audio(browser, server):
    browser.call("Page.enable")
    browser.call("Page.navigate", url=server.base + "/")
    browser.wait("document.readyState === 'complete' && !!window.playground")
    assert browser.eval("document.title") == "higgs-tts playground"
    voices = browser.wait("document.querySelectorAll('#voice option').length > 1 && "
                          "[...document.querySelectorAll('#voice option')].map(o => o.value)")
    assert {"belinda", "en_man"} <= set(voices)
    browser.eval("document.getElementById('voice').value = 'belinda';"
                 "document.getElementById('seed').value = '7';"
                 "document.getElementById('text').value = 'The playground speaks while it generates. ' .repeat(3);"
                 "document.getElementById('play').click(); true")
    phase = browser.wait("['done', 'error'].includes(window.playground.phase) && window.playground.phase")
    state = browser.eval("({...window.playground})")
    assert phase == "done", state
    assert state["samples"] > 24000 and state["scheduled"] >= 2  # played as it streamed, piece by piece
    assert state["bytes"] == 2 * state["samples"] and state["requestId"]
    assert browser.eval("!document.getElementById('download').hidden")
    header = browser.eval("fetch(document.getElementById('download').href).then(r => r.arrayBuffer())"
                          ".then(b => [new TextDecoder().decode(b.slice(0, 4)), b.byteLength])")
    assert header == ["RIFF", 44 + 2 * state["samples"]]
    assert "Done" in browser.eval("document.getElementById('status').textContent")


def test_the_playground_shows_a_refused_request(browser, server):
    browser.call("Page.navigate", url=server.base + "/")
    browser.wait("document.readyState === 'complete' && !!window.playground")
    browser.eval("document.getElementById('text').value = '';"
                 "document.getElementById('play').click(); true")
    browser.wait("window.playground.phase === 'error'")
    assert "transcript" in browser.eval("window.playground.error")
    assert browser.eval("document.getElementById('status').className") == "error"


def test_the_playground_says_when_there_is_no_model(browser, tmp_path):
    """It said "Done: 0.00 s of audio." while the server streamed nothing: now the status line
    comes after the model is loaded, and without one it is a 503 the page shows."""
    (tmp_path / "volume").mkdir()
    empty = HttpServer(tmp_path, MODEL_PATH=str(tmp_path / "volume"), HIGGS_STORE="none", ready_path="/health")
    try:
        browser.call("Page.navigate", url=empty.base + "/")
        browser.wait("document.readyState === 'complete' && !!window.playground")
        browser.eval("document.getElementById('text').value = 'Hello there.';"
                     "document.getElementById('play').click(); true")
        browser.wait("['done', 'error'].includes(window.playground.phase)")
        assert browser.eval("window.playground.phase") == "error"
        assert "not on the volume" in browser.eval("window.playground.error")
        assert "Done" not in browser.eval("document.getElementById('status').textContent")
    finally:
        empty.stop()


def test_speak_as_i_type_speaks_each_sentence_while_the_rest_is_typed(browser, server):
    """The playground's live mode: typed characters go over the WebSocket as they are typed; the
    first sentence is heard before the typing ends, every sentence comes back as a segment."""
    browser.call("Page.navigate", url=server.base + "/")
    browser.wait("document.readyState === 'complete' && !!window.playground")
    browser.wait("document.querySelectorAll('#voice option').length > 1")
    browser.eval("document.getElementById('voice').value = 'belinda';"
                 "document.getElementById('seed').value = '7';"
                 "document.getElementById('live').click(); true")
    assert browser.eval("document.getElementById('live').checked && document.getElementById('text').value === ''")
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
    browser.eval("document.getElementById('finish').click(); true")
    phase = browser.wait("['done', 'error', 'closed'].includes(window.playground.live.phase) && "
                         "window.playground.live.phase")
    live = browser.eval("({...window.playground.live, ws: null, context: null})")
    assert phase == "done", live
    texts = [s["text"] for s in live["segments"]]
    assert texts[0] == "First I say this." and " ".join(texts).endswith("And a third one.")
    for before, after in zip(live["segments"], live["segments"][1:]):
        assert after["audio_start_ms"] == before["audio_end_ms"]
    assert live["segments"][-1]["audio_end_ms"] == round(live["samples"] * 1000 / 24000, 3)
    assert "Done" in browser.eval("document.getElementById('status').textContent")
