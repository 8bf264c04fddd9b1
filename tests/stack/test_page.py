"""The page at `/` in a real browser: Debian's Chromium, headless, driven by Selenium, against
the real shim and daemon (faster-whisper, tiny.en).

Chromium's fake microphone "speaks" `jfk.wav` once, then silence, so the Record test hears
real speech through getUserMedia, the AudioWorklet and the Realtime WebSocket. Chromium
missing is a failure here, never a skip (`testing/browser.py`; `.ci/run` installs it).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import wave
from pathlib import Path

import pytest
from openai import BadRequestError, OpenAI
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from bench.wer import wer
from testing.browser import Browser
from testing.speech import JFK_FILE, JFK_TEXT
from testing.stack import Shim

KEY = "page-secret"
WAIT_S = 120  # generous: the machine may be slow or shared; the waits end as soon as the page is ready


@pytest.fixture(scope="module")
def speech_then_silence(tmp_path_factory) -> Path:
    """jfk.wav and 3 s of digital silence. Played once (`%noloop`), Chromium's fake device then
    repeats the file's last 10 ms for ever: that must be silence, or the turn never ends."""
    path = tmp_path_factory.mktemp("mic") / "jfk-then-silence.wav"
    with wave.open(str(JFK_FILE), "rb") as src:
        params, frames = src.getparams(), src.readframes(src.getnframes())
    with wave.open(str(path), "wb") as out:
        out.setparams(params)
        out.writeframes(frames + b"\0" * (3 * params.framerate * params.sampwidth * params.nchannels))
    return path


@pytest.fixture(scope="module")
def browser(speech_then_silence):
    b = Browser(fake_audio=speech_then_silence, loop_audio=False)
    yield b
    b.quit()


@pytest.fixture(scope="module")
def keyed_shim(fw_stack):
    shim = Shim(fw_stack.daemon.socket, "--api-key", KEY)
    yield shim
    shim.stop()


def wait(browser: Browser, condition, what: str, timeout: float = WAIT_S):
    try:
        return WebDriverWait(browser.driver, timeout, poll_frequency=0.1).until(lambda d: condition())
    except TimeoutException:
        shown = {i: content(browser, i) for i in ("status", "error", "transcript", "partial")}
        raise AssertionError(f"no {what} after {timeout} s; the page shows {shown}") from None


def content(browser: Browser, element_id: str) -> str:
    return browser.driver.find_element(By.ID, element_id).get_attribute("textContent")


def open_page(browser: Browser, url: str) -> None:
    browser.driver.get(url + "/")
    # Ready, or an error said in words (a key is needed): either way the page has booted.
    wait(browser, lambda: content(browser, "status").startswith(("Ready", "Not ready", "This server needs")),
         "the page to boot")
    browser.console()  # start each test with an empty console


def api_error(url: str, path: str, key: str | None) -> dict:
    request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {key}"} if key else {})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=30)
    return json.loads(info.value.read())["error"]


def choose_file(browser: Browser, path) -> None:
    browser.driver.find_element(By.ID, "file").send_keys(str(path))


# --- the page itself ---------------------------------------------------------------------------


def test_the_page_is_served_under_a_policy_the_browser_enforces(fw_stack, browser):
    with urllib.request.urlopen(fw_stack.url + "/", timeout=30) as r:
        csp = r.headers["Content-Security-Policy"]
        assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "script-src 'self';" in csp and "style-src 'self';" in csp
    assert f"connect-src 'self' ws://127.0.0.1:{fw_stack.shim.port} wss://127.0.0.1:{fw_stack.shim.port};" in csp
    open_page(browser, fw_stack.url)
    d = browser.driver
    assert d.execute_script("return document.querySelectorAll('script:not([src]), style, [style]').length") == 0
    # The policy is in force: an inline script added now does not run, and Chromium says why.
    ran = d.execute_script("""
        const s = document.createElement('script');
        s.textContent = 'window.inlineRan = true';
        document.head.append(s);
        return window.inlineRan === true;""")
    assert ran is False
    errors = browser.console_errors()
    assert errors and all("Content Security Policy" in e["message"] for e in errors), errors


# --- a file -------------------------------------------------------------------------------------


def test_a_file_streams_its_words_and_gives_the_formats_the_api_writes(fw_stack, browser):
    open_page(browser, fw_stack.url)
    d = browser.driver
    Select(d.find_element(By.ID, "format")).select_by_value("srt")
    choose_file(browser, JFK_FILE)
    wait(browser, lambda: content(browser, "status") in ("Done: jfk.wav", "Failed: jfk.wav"), "the transcript")
    assert content(browser, "error") == ""
    got = content(browser, "transcript")
    assert wer(JFK_TEXT, got) <= 0.15, got
    assert d.execute_script("return document.getElementById('progress').value") == 1
    # The chosen format, as the API wrote it (a second request after the stream's done).
    srt = content(browser, "result")
    assert srt.startswith("1\n00:00:00,000 --> ") and wer(JFK_TEXT, srt.split("\n", 2)[2]) <= 0.15, srt
    d.find_element(By.ID, "download-vtt").click()
    # Chromium may create the file before it writes it: wait for its bytes, not its name.
    vtt = browser.downloads / "jfk.vtt"
    wait(browser, lambda: vtt.exists() and vtt.stat().st_size > 0, "jfk.vtt downloaded")
    assert vtt.read_text().startswith("WEBVTT\n")
    # The service's state: the hot worker's lanes, the models.
    wait(browser, lambda: "hot" in content(browser, "lanes"), "the lanes from /health")
    assert "tiny.en" in content(browser, "models") and "whisper-1" in content(browser, "models")
    assert browser.console_errors() == []


def test_a_file_the_server_cannot_decode_is_said_in_the_apis_words(fw_stack, browser, tmp_path):
    not_audio = tmp_path / "notes.wav"
    not_audio.write_bytes(b"these are not the sounds you are looking for\n" * 50)
    with OpenAI(base_url=fw_stack.url + "/v1", api_key="x", max_retries=0) as client:
        with pytest.raises(BadRequestError) as info:
            client.audio.transcriptions.create(model="whisper-1", file=("notes.wav", not_audio.read_bytes()))
    message = info.value.response.json()["error"]["message"]
    open_page(browser, fw_stack.url)
    choose_file(browser, not_audio)
    wait(browser, lambda: content(browser, "status") == "Failed: notes.wav", "the refusal")
    assert content(browser, "error") == message
    errors = browser.console_errors()
    assert errors and all(e["source"] == "network" and "400" in e["message"] for e in errors), errors


def test_a_wrong_key_is_said_in_the_apis_words_and_the_right_one_works(keyed_shim, browser):
    refused = api_error(keyed_shim.url, "/v1/models", "wrong")
    assert refused["code"] == "invalid_api_key"
    browser.driver.get(keyed_shim.url + "/")  # no key yet: the models cannot load, and the page says why
    wait(browser, lambda: content(browser, "error") == refused["message"], "the missing key's message")
    assert content(browser, "status") == "This server needs its API key: type it above."
    d = browser.driver
    assert d.switch_to.active_element.get_attribute("id") == "key"
    d.find_element(By.ID, "key").send_keys("wrong\n")  # Enter submits the key's form
    wait(browser, lambda: content(browser, "key-state") == "key set for this tab", "the key taken")
    choose_file(browser, JFK_FILE)
    wait(browser, lambda: content(browser, "status") == "Failed: jfk.wav", "the refusal")
    assert content(browser, "error") == refused["message"]
    assert d.find_element(By.ID, "error").get_attribute("role") == "alert"
    assert content(browser, "transcript") == ""
    # What Chromium logged is the refused requests themselves, nothing else.
    errors = browser.console_errors()
    assert errors and all(e["source"] == "network" and "401" in e["message"] for e in errors), errors

    d.find_element(By.ID, "key").send_keys(KEY + "\n")
    wait(browser, lambda: content(browser, "status") == "Key saved.", "the right key")
    assert content(browser, "error") == ""
    d.find_element(By.ID, "transcribe").click()
    wait(browser, lambda: content(browser, "status") in ("Done: jfk.wav", "Failed: jfk.wav"), "the transcript")
    assert wer(JFK_TEXT, content(browser, "transcript")) <= 0.15, content(browser, "transcript")
    wait(browser, lambda: "hot" in content(browser, "lanes"), "the lanes, shown with the key")
    assert browser.console_errors() == []


# --- the microphone -----------------------------------------------------------------------------


OBSERVE = """
    // Every text #partial and #transcript take, with when: partial words must come first.
    window.seen = {partial: [], transcript: []};
    for (const id of ['partial', 'transcript']) {
      const el = document.getElementById(id);
      new MutationObserver(() => window.seen[id].push([performance.now(), el.textContent]))
        .observe(el, {childList: true, characterData: true, subtree: true});
    }"""


def test_record_shows_partial_words_then_the_final_words(keyed_shim, browser):
    open_page(browser, keyed_shim.url)  # the key from the test before is kept by this tab
    d = browser.driver
    d.find_element(By.ID, "key").send_keys(KEY + "\n")
    wait(browser, lambda: content(browser, "status") == "Key saved.", "the key")
    browser.console()
    d.execute_script(OBSERVE)
    d.find_element(By.ID, "record").click()
    assert d.switch_to.active_element.get_attribute("id") == "stop"  # the keyboard lands on Stop
    wait(browser, lambda: wer(JFK_TEXT, content(browser, "transcript")) <= 0.15 or content(browser, "error"),
         "the final words of the fake microphone's speech")
    assert content(browser, "error") == ""
    d.find_element(By.ID, "stop").click()
    wait(browser, lambda: content(browser, "status") == "Stopped.", "the recording to stop")
    seen = d.execute_script("return window.seen")
    partials = [(t, text) for t, text in seen["partial"] if text.strip()]
    finals = [(t, text) for t, text in seen["transcript"] if text.strip()]
    assert partials, seen
    assert partials[0][0] < finals[0][0], seen  # words showed as partial before any was final
    got = content(browser, "transcript")
    assert wer(JFK_TEXT, got) <= 0.15, got
    assert content(browser, "partial") == ""
    assert browser.console_errors() == []


def test_a_refused_microphone_is_said_in_words(fw_stack):
    refusing = Browser(fake_audio=JFK_FILE, deny_microphone=True)
    try:
        open_page(refusing, fw_stack.url)
        d = refusing.driver
        d.find_element(By.ID, "record").click()
        wait(refusing, lambda: content(refusing, "error"), "the refusal said")
        assert content(refusing, "error").startswith("The microphone was refused"), content(refusing, "error")
        assert content(refusing, "status") == "Not recording."
        assert d.find_element(By.ID, "record").is_enabled() and not d.find_element(By.ID, "stop").is_enabled()
        assert refusing.console_errors() == []
    finally:
        refusing.quit()
