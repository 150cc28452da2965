"""Faults tried for real: kill -9, four processes at once, a flaky Dodo, disk trouble.

Run them alone with `python -m pytest -m faults`.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import pixelgen
from conftest import PIXELGEN, Result, journal_rows, run_cli
from standins import FakeDodo, FakeOpenAI

pytestmark = pytest.mark.faults
KILLPOINT = Path(__file__).resolve().parent / "killpoint.py"


def wait_for(condition: Callable[[], object], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def images() -> list[Path]:
    return list(Path("images").glob("*.png")) if Path("images").exists() else []


def start(
    *args: str, script: Path = PIXELGEN, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(extra_env or {})},
    )


# kill -9 at each point #######################################################


def test_killed_during_generation_nothing_is_saved_or_billed(
    env: dict[str, str], openai_server: FakeOpenAI, dodo_server: FakeDodo
) -> None:
    """Guarantee: no image, no event; the user was not billed for an image they never got."""
    openai_server.delay = 30
    process = start("--prompt", "A robot")
    wait_for(lambda: openai_server.calls("POST", "/v1/images/generations"))
    process.send_signal(signal.SIGKILL)
    process.wait()

    assert images() == []
    assert not Path("pixelgen.db").exists() or journal_rows() == []
    assert run_cli("flush").code == 0
    assert dodo_server.events == {}


def test_killed_after_saving_before_journaling_the_image_is_free(
    env: dict[str, str], dodo_server: FakeDodo
) -> None:
    """Guarantee: nothing is billed for an image whose event was never journaled (the one unbilled window)."""
    process = start(
        "--prompt", "A robot", script=KILLPOINT, extra_env={"PIXELGEN_TEST_KILL_AT": "after-save"}
    )
    process.wait()

    assert process.returncode == -signal.SIGKILL
    assert len(images()) == 1
    assert journal_rows() == []
    assert run_cli("flush").code == 0
    assert dodo_server.events == {}
    assert list(Path("images").glob(".pixelgen-*.tmp")) == []  # no temporary file left behind


def test_killed_after_journaling_the_event_is_delivered_by_a_later_run(
    env: dict[str, str], dodo_server: FakeDodo
) -> None:
    """Guarantee: a journaled event is never lost; the next run sends it, once."""
    process = start(
        "--prompt", "A robot", script=KILLPOINT, extra_env={"PIXELGEN_TEST_KILL_AT": "after-journal"}
    )
    process.wait()
    assert process.returncode == -signal.SIGKILL
    [row] = journal_rows()
    assert row["status"] == "pending" and dodo_server.events == {}

    assert run_cli("flush").code == 0

    assert list(dodo_server.events) == [row["event_id"]]
    assert journal_rows()[0]["status"] == "delivered"


def test_killed_during_the_ingest_request_the_event_is_billed_once(
    env: dict[str, str], dodo_server: FakeDodo
) -> None:
    """Guarantee: Dodo may already have the event; resending the same id cannot bill it twice."""
    dodo_server.stall_after_ingest = 30  # Dodo stores the event, then the answer never comes
    process = start("--prompt", "A robot")
    wait_for(lambda: dodo_server.events)
    process.send_signal(signal.SIGKILL)
    process.wait()
    [row] = journal_rows()
    assert row["status"] == "pending"

    dodo_server.stall_after_ingest = 0
    assert run_cli("flush").code == 0

    sent = [event["event_id"] for call in dodo_server.ingest_calls() for event in call]
    assert sent == [row["event_id"], row["event_id"]]
    assert len(dodo_server.events) == 1
    assert journal_rows()[0]["status"] == "delivered"


# four processes at once ######################################################


def test_four_sessions_of_25_images_share_one_journal(env: dict[str, str], dodo_server: FakeDodo) -> None:
    script = "".join(f"robot {n}\n{'hd' if n % 2 else 'standard'}\n" for n in range(25)) + "\n"
    processes = [start() for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:  # all four type their prompts at once
        outputs = list(pool.map(lambda process: process.communicate(script, timeout=120), processes))
    results = [Result(p.returncode, out, err) for p, (out, err) in zip(processes, outputs, strict=True)]

    assert [r.code for r in results] == [0, 0, 0, 0], [r.err for r in results]
    assert not any("locked" in r.err or "Traceback" in r.err for r in results)
    rows = journal_rows()
    assert len(rows) == 100 and len({row["event_id"] for row in rows}) == 100
    assert {row["status"] for row in rows} == {"delivered"}
    assert sorted(dodo_server.events) == sorted(row["event_id"] for row in rows)
    assert len(images()) == 100


# a flaky billing server ######################################################


def test_a_flaky_dodo_over_200_images_then_one_flush_bills_each_image_once(
    run, monkeypatch: pytest.MonkeyPatch, dodo_server: FakeDodo
) -> None:
    # 30% of requests fail at random: a 500, a reset connection, an answer slower
    # than the timeout, or an answer lost after Dodo stored the events.
    dodo_server.flaky_rate = 0.3
    dodo_server.slow_seconds = 1.0
    monkeypatch.setattr(pixelgen, "DODO_TIMEOUT_SECONDS", 0.3)
    monkeypatch.setattr(pixelgen, "BACKOFF_FIRST_SECONDS", 0.0)  # try after every image
    script = "".join(f"robot {n}\n\n" for n in range(200)) + "\n"

    session = run(stdin=script)
    flush = run("flush")

    assert session.code == 0 and flush.code == 0, flush.err
    rows = journal_rows()
    assert len(rows) == 200 and {row["status"] for row in rows} == {"delivered"}
    assert sorted(dodo_server.events) == sorted(row["event_id"] for row in rows)
    assert len(dodo_server.counted_by_tutorial_meter()) == 200
    assert dodo_server.faults_injected > 30  # the faults really happened


# disk trouble ################################################################


@pytest.mark.parametrize("folder", ["/proc/pixelgen-images", "a-file/images"])
def test_an_output_folder_that_cannot_be_made_fails_before_generation(
    run, monkeypatch: pytest.MonkeyPatch, openai_server: FakeOpenAI, folder: str
) -> None:
    Path("a-file").write_text("")
    monkeypatch.setenv("PIXELGEN_OUTPUT_DIR", folder)
    result = run("--prompt", "A robot")

    assert result.code == 1
    assert result.err.startswith(f"Error: cannot create {folder}: ")
    assert result.err.strip().endswith("set PIXELGEN_OUTPUT_DIR")
    assert openai_server.requests == []
    assert not Path("pixelgen.db").exists()


@pytest.mark.parametrize("journal", ["/proc/pixelgen.db", "missing-folder/pixelgen.db"])
def test_a_journal_on_a_path_that_cannot_be_written_fails_before_generation(
    run, monkeypatch: pytest.MonkeyPatch, openai_server: FakeOpenAI, journal: str
) -> None:
    monkeypatch.setenv("PIXELGEN_DB", journal)
    result = run("--prompt", "A robot")

    assert result.code == 1
    assert result.err.strip() == (
        f"Error: cannot use the usage journal {journal}: unable to open database file;"
        " set PIXELGEN_DB to a writable file"
    )
    assert openai_server.requests == [] and images() == []


def test_a_read_only_journal_file_fails_before_generation(
    run, monkeypatch: pytest.MonkeyPatch, openai_server: FakeOpenAI
) -> None:
    pixelgen.Journal(Path("pixelgen.db")).db.close()
    connect = sqlite3.connect
    # Tests run as root, which ignores file modes; open the file read-only instead.
    monkeypatch.setattr(
        pixelgen.sqlite3, "connect", lambda path, **kw: connect(f"file:{path}?mode=ro", uri=True, **kw)
    )

    result = run("--prompt", "A robot")

    assert result.code == 1
    assert "attempt to write a readonly database" in result.err
    assert openai_server.requests == [] and images() == []


def test_a_journal_that_is_not_a_database_is_one_clear_error(run, openai_server: FakeOpenAI) -> None:
    Path("pixelgen.db").write_text("these are my notes\n" * 100)
    result = run("--prompt", "A robot")
    assert result.code == 1
    assert result.err.strip() == (
        "Error: cannot use the usage journal pixelgen.db: file is not a database;"
        " set PIXELGEN_DB to a writable file"
    )
    assert openai_server.requests == []


def test_a_journal_write_failing_after_the_image_says_what_happened(
    run, monkeypatch: pytest.MonkeyPatch, dodo_server: FakeDodo
) -> None:
    def disk_full(self: pixelgen.Journal, event: pixelgen.UsageEvent) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(pixelgen.Journal, "record", disk_full)
    result = run("--prompt", "A robot")

    [image] = images()
    assert result.code == 1
    assert result.err.strip() == (
        f"Error: saved {image}, but could not record its usage event in pixelgen.db: database or disk is full"
    )
    assert dodo_server.events == {}


def test_a_journal_that_stays_locked_is_one_clear_error(run, monkeypatch: pytest.MonkeyPatch) -> None:
    def locked(self: pixelgen.Journal) -> list[pixelgen.UsageEvent]:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(pixelgen.Journal, "pending_events", locked)
    result = run("flush")

    assert result.code == 1
    assert (
        result.err.strip() == "Error: the usage journal failed: database is locked; journaled events are kept"
    )
