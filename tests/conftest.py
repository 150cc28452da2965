"""Every test runs in its own empty folder, against its own loopback stand-ins."""

from __future__ import annotations

import io
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pixelgen
from standins import CUSTOMER, DODO_KEY, OPENAI_KEY, FakeDodo, FakeOpenAI

PIXELGEN = Path(__file__).resolve().parent.parent / "pixelgen.py"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "faults: fault-injection tests (kill -9, flaky servers, disks)")


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def dodo_server() -> Iterator[FakeDodo]:
    server = FakeDodo().start()  # type: ignore[call-arg]
    yield server
    server.stop()


def closed_port_url() -> str:
    """A loopback URL where nothing listens: Dodo is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, openai_server: FakeOpenAI, dodo_server: FakeDodo
) -> dict[str, str]:
    """A working configuration with fake keys, pointed at the stand-ins, in an empty folder."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("OPENAI_", "DODO_", "PIXELGEN_")):
            monkeypatch.delenv(name)
    values = {
        "OPENAI_API_KEY": OPENAI_KEY,
        "DODO_PAYMENTS_API_KEY": DODO_KEY,
        "DODO_PAYMENTS_CUSTOMER_ID": CUSTOMER,
        "OPENAI_BASE_URL": openai_server.base_url,
        "DODO_PAYMENTS_BASE_URL": dodo_server.url,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def run(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Result]:
    """Run pixelgen's command line in this process, with scripted standard input."""

    def run(*args: str, stdin: str = "") -> Result:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        try:
            code = pixelgen.main(list(args))
        except SystemExit as exit:  # argparse
            code = int(exit.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def run_cli(*args: str, stdin: str = "", cwd: Path | None = None, timeout: float = 60) -> Result:
    """Run `python pixelgen.py` as its own process, as a user would."""
    done = subprocess.run(
        [sys.executable, str(PIXELGEN), *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def journal_rows(path: Path = Path("pixelgen.db")) -> list[sqlite3.Row]:
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    rows = db.execute("SELECT * FROM events ORDER BY created_at, event_id").fetchall()
    db.close()
    return rows
