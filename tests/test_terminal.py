"""A person at a real terminal: prompts, the spinner, Ctrl-C and Ctrl-D."""

from __future__ import annotations

import os
import pty
import select
import sys
import time
from pathlib import Path

from conftest import PIXELGEN
from standins import FakeDodo, FakeOpenAI


class Terminal:
    """pixelgen running in a pseudo-terminal, read the way a person reads a screen."""

    def __init__(self) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child becomes pixelgen, with the pty as its controlling terminal
            os.execv(sys.executable, [sys.executable, str(PIXELGEN)])
        self.screen = ""

    def expect(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.screen:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{text!r} never appeared; the screen shows:\n{self.screen}")
            if select.select([self.fd], [], [], remaining)[0]:
                try:
                    self.screen += os.read(self.fd, 4096).decode(errors="replace")
                except OSError:  # the child has exited
                    raise AssertionError(
                        f"{text!r} never appeared; the screen shows:\n{self.screen}"
                    ) from None

    def type(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def exit_code(self) -> int:
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status)


def test_a_person_at_a_terminal_cancels_an_image_and_leaves(
    env: dict[str, str], openai_server: FakeOpenAI, dodo_server: FakeDodo
) -> None:
    openai_server.delay = 5  # a slow model, so there is time to watch and to press Ctrl-C
    terminal = Terminal()

    terminal.expect("Enter your image prompt: ")
    terminal.type("A cute robot painting a landscape\r")
    terminal.expect("Quality [standard/hd]: ")
    terminal.type("hd\r")
    terminal.expect("Generating image... ")
    deadline = time.monotonic() + 20
    while not openai_server.calls("POST", "/v1/images/generations"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    terminal.type("\x03")  # Ctrl-C while the image is being generated
    terminal.expect("Cancelled; nothing was billed.")
    terminal.screen = terminal.screen.split("Cancelled; nothing was billed.", 1)[1]
    terminal.expect("Enter your image prompt: ")  # the prompt comes back
    terminal.type("\x04")  # Ctrl-D at the prompt
    terminal.expect("Session: 0 images, 0 billed, 0 pending.")

    assert terminal.exit_code() == 0
    assert not list(Path(".").glob("images/*.png"))
    assert dodo_server.events == {}
