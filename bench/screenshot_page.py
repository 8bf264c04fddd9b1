"""docs/page.png: the page at / mid-transcription, in headless Chromium against the real stack.

A 98 s recording (tests/fixtures/long.mp3's speech three times, four windows) is chosen in the
page; the picture is taken once its first words are on the page and before the last, so the
progress bar and the lanes show the work under way.

    .venv/bin/python bench/screenshot_page.py [--out docs/page.png]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from selenium.webdriver.common.by import By  # noqa: E402

from testing.browser import Browser  # noqa: E402
from testing.speech import long_speech_wav  # noqa: E402
from testing.stack import ROOT, Stack  # noqa: E402

WIDTH = 1200


def text_of(browser: Browser, element_id: str) -> str:
    return browser.driver.find_element(By.ID, element_id).get_attribute("textContent")


def until(condition, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the page did not get there in time")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "page.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        recording = Path(tmp) / "interview.wav"
        recording.write_bytes(long_speech_wav(3))
        stack = Stack("--engine", "faster-whisper")
        browser = Browser(width=WIDTH, height=900)
        try:
            d = browser.driver
            d.get(stack.url + "/")
            until(lambda: text_of(browser, "status").startswith("Ready"))
            until(lambda: "hot" in text_of(browser, "lanes"))
            d.find_element(By.ID, "file").send_keys(str(recording))
            # Mid-transcription: some words in, a lane at work, the stream not done.
            until(lambda: len(text_of(browser, "transcript")) > 120 and "busy" in text_of(browser, "lanes"))
            if text_of(browser, "status").startswith("Done"):
                raise SystemExit("the file finished before the picture: nothing was mid-transcription")
            height = d.execute_script("return document.documentElement.scrollHeight")
            d.set_window_size(WIDTH, height + 100)
            d.save_screenshot(str(args.out))
            errors = browser.console_errors()
            if errors:
                raise SystemExit(f"the browser console had errors: {errors}")
        finally:
            browser.quit()
            stack.stop()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
