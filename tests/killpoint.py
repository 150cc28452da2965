"""Run pixelgen's command line and SIGKILL this process at a named point.

Used by the fault tests to stop pixelgen exactly between two steps that no
outside timing could reliably hit: PIXELGEN_TEST_KILL_AT=after-save kills it
once the image is on disk but before its event is journaled, and
after-journal once the event is journaled but before anything is sent.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pixelgen


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


point = os.environ["PIXELGEN_TEST_KILL_AT"]
if point == "after-save":
    save_image = pixelgen.save_image

    def save_then_die(*args: Any) -> Path:
        save_image(*args)
        die()
        raise AssertionError("unreachable")

    pixelgen.save_image = save_then_die
elif point == "after-journal":
    record = pixelgen.Journal.record

    def record_then_die(self: pixelgen.Journal, event: pixelgen.UsageEvent) -> None:
        record(self, event)
        die()

    pixelgen.Journal.record = record_then_die  # type: ignore[method-assign]
else:
    raise SystemExit(f"unknown kill point {point!r}")

sys.exit(pixelgen.main(sys.argv[1:]))
