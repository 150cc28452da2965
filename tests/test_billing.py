"""Every image is billed exactly once, whatever Dodo, the network or the process does."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import pixelgen
from conftest import closed_port_url, journal_rows, run_cli
from standins import CUSTOMER, FakeDodo


def journal_with_pending(count: int, created: datetime | None = None) -> list[str]:
    """Pending events as a crashed or offline run would have left them."""
    journal = pixelgen.Journal(Path("pixelgen.db"))
    created = created or datetime.now(timezone.utc)
    ids = []
    with journal.transaction():
        for n in range(count):
            event = pixelgen.UsageEvent.new(CUSTOMER, "hd" if n % 2 else "standard", "gpt-image-2", created)
            journal.record(event)
            ids.append(event.event_id)
    return ids


def test_dodo_down_then_flush_delivers_the_same_event(
    run, monkeypatch: pytest.MonkeyPatch, dodo_server: FakeDodo
) -> None:
    monkeypatch.setenv("DODO_PAYMENTS_BASE_URL", closed_port_url())
    assert run("--prompt", "A robot").code == 0
    [row] = journal_rows()

    offline = run("flush")
    assert offline.code == 1
    assert "1 event still pending: Dodo is unreachable" in offline.err

    monkeypatch.setenv("DODO_PAYMENTS_BASE_URL", dodo_server.url)
    online = run("flush")
    assert online.code == 0
    assert "Delivered 1 event; 0 pending." in online.out
    assert list(dodo_server.events) == [row["event_id"]]
    assert journal_rows()[0]["status"] == "delivered"


def test_server_errors_then_success_send_one_event_id_throughout(run, dodo_server: FakeDodo) -> None:
    dodo_server.failures = [500, 503, 500]
    one_shot = run("--prompt", "A robot")  # the session path does not retry: 500
    assert one_shot.code == 0
    assert "Billing pending, will retry: Dodo answered 500" in one_shot.err

    flushed = run("flush")  # flush lets the SDK retry: 503, 500, then accepted

    assert flushed.code == 0
    sent_ids = [event["event_id"] for call in dodo_server.ingest_calls() for event in call]
    assert len(sent_ids) == 4 and len(set(sent_ids)) == 1
    assert len(dodo_server.events) == 1
    assert journal_rows()[0]["status"] == "delivered"


def test_a_rejected_key_keeps_events_pending_and_says_how_to_fix_it(
    run, monkeypatch: pytest.MonkeyPatch, dodo_server: FakeDodo
) -> None:
    dodo_server.api_key = "dodo_live_other_key"  # e.g. a test key used against live_mode
    one_shot = run("--prompt", "A robot")
    flushed = run("flush")

    assert one_shot.code == 0  # the image was made and saved
    for output in (one_shot.err, flushed.err):
        assert "Dodo rejected DODO_PAYMENTS_API_KEY" in output
        assert "a test key works only with test_mode, a live key only with live_mode" in output
    assert flushed.code == 1
    assert [row["status"] for row in journal_rows()] == ["pending"]
    assert dodo_server.events == {}


@pytest.mark.parametrize("names_the_event", [True, False])
def test_a_400_for_one_event_rejects_only_that_event(
    run, dodo_server: FakeDodo, names_the_event: bool
) -> None:
    ids = journal_with_pending(7)
    bad = ids[4]
    dodo_server.reject_ids = {bad: "customer_id does not exist"}
    dodo_server.name_rejected_ids = names_the_event

    result = run("flush")

    assert result.code == 0
    assert f"Rejected by Dodo, event {bad}: Dodo answered 400:" in result.err
    assert "customer_id does not exist" in result.err
    assert sorted(dodo_server.events) == sorted(set(ids) - {bad})
    statuses = {row["event_id"]: (row["status"], row["last_error"]) for row in journal_rows()}
    assert statuses[bad][0] == "rejected" and "customer_id does not exist" in statuses[bad][1]
    assert all(status == "delivered" for event_id, (status, _) in statuses.items() if event_id != bad)
    # A rejected event is not retried forever.
    requests_so_far = len(dodo_server.requests)
    assert run("flush").code == 0
    assert len(dodo_server.requests) == requests_so_far


def test_more_than_1000_pending_events_go_in_requests_of_at_most_1000(run, dodo_server: FakeDodo) -> None:
    ids = journal_with_pending(2_345)

    result = run("flush")

    assert result.code == 0
    assert [len(call) for call in dodo_server.ingest_calls()] == [1000, 1000, 345]
    assert sorted(dodo_server.events) == sorted(ids)


def test_an_event_older_than_an_hour_is_still_billed_with_its_own_time_kept(
    run, dodo_server: FakeDodo
) -> None:
    generated = datetime.now(timezone.utc) - timedelta(hours=3)
    [event_id] = journal_with_pending(1, created=generated)

    result = run("flush")

    assert result.code == 0
    sent = dodo_server.events[event_id]
    assert "timestamp" not in sent  # Dodo would reject a 3-hour-old one; it stamps receipt time instead
    assert sent["metadata"]["generated_at"] == pixelgen.format_timestamp(generated)
    assert sent["metadata"]["quality"] == "standard"


def test_a_fresh_event_carries_its_generation_time(run, dodo_server: FakeDodo) -> None:
    run("--prompt", "A robot")
    [row] = journal_rows()
    assert dodo_server.events[row["event_id"]]["timestamp"] == row["created_at"]


def test_flush_delivers_every_customers_events(run, dodo_server: FakeDodo) -> None:
    run("--prompt", "A robot", "--customer", "cus_a")
    run("--prompt", "A robot", "--customer", "cus_b")
    assert {event["customer_id"] for event in dodo_server.events.values()} == {"cus_a", "cus_b"}


def test_a_session_with_billing_down_backs_off_instead_of_retrying_every_image(
    run, monkeypatch: pytest.MonkeyPatch, dodo_server: FakeDodo
) -> None:
    dodo_server.failures = [500] * 100
    script = "".join(f"robot {n}\nstandard\n" for n in range(5)) + "\n"

    result = run(stdin=script)

    assert result.code == 0
    # One try after the first image, then backing off, then one at the end of the session.
    assert len(dodo_server.calls("POST", "/events/ingest")) == 2
    assert result.err.count("Billing pending, will retry: Dodo answered 500") == 5
    assert "Session: 5 images, 0 billed, 5 pending. 5 events in the journal" in result.out


def test_a_session_delivers_events_left_by_an_earlier_run(run, dodo_server: FakeDodo) -> None:
    earlier = journal_with_pending(3)
    run("--prompt", "A robot")
    assert set(earlier) < set(dodo_server.events)
    assert len(dodo_server.events) == 4


def test_two_processes_share_one_journal(env: dict[str, str], dodo_server: FakeDodo) -> None:
    script = "".join(f"robot {n}\nhd\n" for n in range(5)) + "\n"
    results = []

    def session() -> None:
        results.append(run_cli(stdin=script))

    threads = [threading.Thread(target=session) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [r.code for r in results] == [0, 0], [r.err for r in results]
    assert all("locked" not in r.err for r in results)
    rows = journal_rows()
    assert len(rows) == 10 and len({row["event_id"] for row in rows}) == 10
    assert {row["status"] for row in rows} == {"delivered"}
    assert sorted(dodo_server.events) == sorted(row["event_id"] for row in rows)
    assert len(list(Path("images").glob("*.png"))) == 10


def test_the_tutorial_check_12_images_2_billable_10_cents(run, dodo_server: FakeDodo) -> None:
    prompts = [
        "A cute robot painting a landscape",
        "A sunset over mountains with purple clouds",
        "A steampunk coffee machine in a Victorian kitchen",
        "A friendly dragon reading a book in a library",
    ]
    script = "".join(f"{prompts[n % 4]}\n{'hd' if n % 3 == 0 else ''}\n" for n in range(12)) + "\n"
    assert run(stdin=script).code == 0

    bill = json.loads(run("usage", "--json").out)

    assert len(dodo_server.counted_by_tutorial_meter()) == 12
    assert bill == {
        "customer_id": CUSTOMER,
        "month": datetime.now(timezone.utc).strftime("%Y-%m"),
        "images": 12,
        "standard": 8,
        "hd": 4,
        "delivered": 12,
        "pending": 0,
        "rejected": 0,
        "free": 10,
        "billable": 2,
        "price_per_image": "0.05",
        "amount": "0.10",
        "currency": "USD",
    }
    text = run("usage").out
    assert "billable       2  x $0.05 = $0.10 USD" in text
