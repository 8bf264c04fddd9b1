"""Debian's Chromium, headless, driven by Selenium: the page's tests and its screenshot.

`chromium` and `chromium-driver` come from apt (`.ci/run`); a missing one is an error, not a
skip, so a CI image without them fails loudly. The fake media flags give the page a
microphone that "speaks" a WAV file, and grant the permission without a prompt.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


class Browser:
    """A headless Chromium session with its own throw-away profile."""

    def __init__(self, *, fake_audio: Path | None = None, loop_audio: bool = True, deny_microphone: bool = False,
                 width: int = 1280, height: int = 1100) -> None:
        self.downloads = Path(tempfile.mkdtemp(prefix="downloads-", dir="/tmp"))
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        for path in (CHROMIUM, CHROMEDRIVER):
            if not path.exists():
                raise RuntimeError(f"{path} is missing: apt-get install chromium chromium-driver (see .ci/run)")
        self.profile = tempfile.mkdtemp(prefix="chromium-", dir="/tmp")
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        options.add_argument("--headless=new")
        if os.geteuid() == 0:
            options.add_argument("--no-sandbox")  # Chromium refuses to run its sandbox as root
        options.add_argument(f"--user-data-dir={self.profile}")
        options.add_argument(f"--window-size={width},{height}")
        options.add_argument("--disable-dev-shm-usage")  # containers give /dev/shm 64 MB
        options.add_argument("--no-first-run")
        options.add_argument("--disable-background-networking")  # nothing but the page's own requests
        if deny_microphone:
            options.add_argument("--deny-permission-prompts")  # as if the person pressed "Block"
        else:
            options.add_argument("--use-fake-ui-for-media-stream")  # grant the microphone without a prompt
        if fake_audio is not None:
            options.add_argument("--use-fake-device-for-media-stream")
            # Chromium loops the file unless told otherwise; %noloop plays it once, then silence.
            options.add_argument(f"--use-file-for-fake-audio-capture={fake_audio}{'' if loop_audio else '%noloop'}")
        options.add_experimental_option("prefs", {"download.default_directory": str(self.downloads),
                                                  "download.prompt_for_download": False})
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))

    def console(self) -> list[dict]:
        """The console's entries since the last call (Chromium hands each out once)."""
        return self.driver.get_log("browser")

    def console_errors(self) -> list[dict]:
        return [e for e in self.console() if e.get("level") == "SEVERE"]

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)
            shutil.rmtree(self.downloads, ignore_errors=True)
