"""Progress lines of the lab's commands."""

from __future__ import annotations

import time


class Progress:
    """Prints one line per step with the seconds elapsed since it was made."""

    def __init__(self, quiet: bool = False) -> None:
        self.t0 = time.monotonic()
        self.quiet = quiet

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(f"[lab {self.elapsed():6.1f}s] {msg}", flush=True)
