"""whisperctl's progress bar, drawn on stderr from the daemon's progress frames."""

from __future__ import annotations

import time
from typing import Any, TextIO


class ProgressBar:
    """`[#######.........]  43%  12.3/28.6 s` on stderr, driven by the daemon's progress frames.

    On a terminal one line is redrawn with `\\r`; elsewhere (a forced bar into a
    log) each change is a line of its own, so nothing is garbled. `delay` keeps a
    quick voice command from flashing a bar: nothing is drawn before it passes.
    """

    WIDTH = 24

    def __init__(self, stream: TextIO, *, redraw: bool, delay: float = 0.0) -> None:
        self.stream = stream
        self.redraw = redraw
        self.delay = delay
        self.started = time.monotonic()
        self.duration: float | None = None  # seconds of audio, when the daemon says
        self.drawn = False
        self._last = ""
        self._done = 0.0  # end of the last decoded segment, in seconds

    def start(self) -> None:
        if self.delay <= 0:
            self._draw(0.0)

    def on_frame(self, frame: dict[str, Any]) -> None:
        if frame.get("type") == "segment":
            end = (frame.get("segment") or {}).get("end")
            if isinstance(end, (int, float)):
                self._done = float(end)
            return
        if frame.get("type") != "progress":
            return
        fraction = float(frame.get("fraction") or 0.0)
        if isinstance(frame.get("duration"), (int, float)):
            self.duration = float(frame["duration"])
        elif self._done and fraction > 0:
            # `fraction` is the share of the audio decoded so far, and the last
            # segment's end is how much that is: together they give the length.
            self.duration = self._done / fraction
        if self.drawn or time.monotonic() - self.started >= self.delay:
            self._draw(fraction)

    def finish(self, duration: float | None) -> None:
        """The result arrived: the last progress frame may stop short of 100%."""
        if duration is not None:
            self.duration = float(duration)
        if self.drawn:
            self._draw(1.0)
        self.close()

    def close(self) -> None:
        if self.drawn and self.redraw:
            self.stream.write("\n")  # leave the bar, so an error starts on a line of its own
            self.stream.flush()
        self.drawn = False

    def _draw(self, fraction: float) -> None:
        fraction = min(1.0, max(0.0, fraction))
        filled = int(fraction * self.WIDTH)
        line = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {int(fraction * 100):3d}%"
        if self.duration:
            line += f"  {fraction * self.duration:.1f}/{self.duration:.1f} s"
        if line == self._last:
            return
        if self.redraw:
            self.stream.write("\r" + line.ljust(len(self._last)))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._last = line
        self.drawn = True


def add_progress_flags(parser: Any, *, forced: str, never: str) -> None:
    """`--progress` / `--no-progress` (dest `progress`: None, the default, means "on a terminal")."""
    bar = parser.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None, help=forced)
    bar.add_argument("--no-progress", dest="progress", action="store_false", default=None, help=never)
