"""The pure decisions, without a server: mapping, batching, classification, the bill."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

import pixelgen

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)


def event(n: int = 0, created: datetime = NOW, quality: pixelgen.Quality = "standard") -> pixelgen.UsageEvent:
    return pixelgen.UsageEvent(f"id-{n}", "cus_1", quality, "gpt-image-2", pixelgen.format_timestamp(created))


def test_the_tutorial_qualities_map_to_gpt_image_qualities() -> None:
    assert pixelgen.openai_quality("standard") == "medium"
    assert pixelgen.openai_quality("hd") == "high"


@pytest.mark.parametrize(
    ("typed", "quality"), [("", "standard"), (" HD ", "hd"), ("Standard", "standard"), ("high", None)]
)
def test_what_a_user_types_for_quality(typed: str, quality: str | None) -> None:
    assert pixelgen.parse_quality(typed) == quality


def test_batches_hold_at_most_1000_events_with_unique_ids() -> None:
    events = [event(n) for n in range(2500)] + [event(7)]
    batches = pixelgen.ingest_batches(events)
    assert [len(b) for b in batches] == [1000, 1000, 500]
    for batch in batches:
        assert len({e.event_id for e in batch}) == len(batch)


def test_a_fresh_event_keeps_its_timestamp_and_a_stale_one_moves_it_to_metadata() -> None:
    fresh = pixelgen.ingest_payload(event(created=NOW - timedelta(minutes=50)), NOW)
    stale = pixelgen.ingest_payload(event(created=NOW - timedelta(minutes=56)), NOW)
    assert fresh["timestamp"] == "2026-12-04T11:10:00.000Z"
    assert "generated_at" not in fresh["metadata"]
    assert "timestamp" not in stale
    assert stale["metadata"] == {
        "quality": "standard",
        "model": "gpt-image-2",
        "generated_at": "2026-12-04T11:04:00.000Z",
    }
    assert stale["event_name"] == "image.generated"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (None, "transient"),
        (429, "transient"),
        (500, "transient"),
        (503, "transient"),
        (404, "transient"),
        (401, "auth"),
        (403, "auth"),
        (400, "rejected"),
        (422, "rejected"),
    ],
)
def test_how_a_failed_ingest_is_classified(status: int | None, kind: str) -> None:
    assert pixelgen.classify_failure(status) == kind


def test_the_bill_counts_delivered_and_pending_but_not_rejected() -> None:
    counts = {("standard", "delivered"): 9, ("hd", "pending"): 3, ("hd", "rejected"): 2}
    bill = pixelgen.compute_bill(counts, "cus_1", "2026-12", 10, Decimal("0.05"))
    assert (bill.images, bill.standard, bill.hd, bill.rejected) == (12, 9, 3, 2)
    assert bill.billable == 2
    assert bill.amount == Decimal("0.10") and str(bill.amount) == "0.10"


def test_the_tutorials_worked_example_25_images_cost_75_cents() -> None:
    bill = pixelgen.compute_bill({("standard", "delivered"): 25}, "cus_1", "2026-12", 10, Decimal("0.05"))
    assert str(bill.amount) == "0.75"


def test_under_the_free_tier_nothing_is_billable() -> None:
    bill = pixelgen.compute_bill({("hd", "delivered"): 4}, "cus_1", "2026-12", 10, Decimal("0.05"))
    assert (bill.billable, str(bill.amount)) == (0, "0.00")


def test_month_bounds_are_utc_calendar_months() -> None:
    assert pixelgen.month_bounds("2026-12") == ("2026-12-01T00:00:00.000Z", "2027-01-01T00:00:00.000Z")
    assert pixelgen.month_bounds("2028-02") == ("2028-02-01T00:00:00.000Z", "2028-03-01T00:00:00.000Z")


@pytest.mark.parametrize(
    "prompt", ["../../etc/passwd", "/absolute/path", "C:\\windows\\system32", "..", "日本語"]
)
def test_no_prompt_can_name_a_path_outside_the_folder(prompt: str) -> None:
    name = pixelgen.image_filename(prompt, NOW, "abc123")
    assert "/" not in name and "\\" not in name and not name.startswith(".")
    assert name.startswith("20261204-120000-") and name.endswith("-abc123.png")


def test_retired_models_and_their_snapshots_are_known() -> None:
    assert pixelgen.retired_since("dall-e-3") == "2026-05-12"
    assert pixelgen.retired_since("gpt-image-1-2025-04-15") == "2026-10-23"
    assert pixelgen.retired_since("gpt-image-2") is None
    assert pixelgen.retired_since("gpt-image-2-2026-04-21") is None


@pytest.mark.parametrize(
    ("dollars", "cents"), [("0.05", "5"), ("0.10", "10"), ("1", "100"), ("0.055", "5.5")]
)
def test_the_price_goes_to_dodo_in_cents(dollars: str, cents: str) -> None:
    assert pixelgen.price_in_cents(Decimal(dollars)) == cents
