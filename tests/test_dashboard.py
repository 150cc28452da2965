"""The tutorial's dashboard steps from the terminal: setup, doctor and the remote bill."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

import pixelgen
from conftest import closed_port_url
from standins import CUSTOMER, OPENAI_KEY, FakeDodo, FakeOpenAI

TUTORIAL_FILTER = pixelgen.METER_FILTER


def lines_of(output: str) -> dict[str, str]:
    """doctor's output as {check name: 'ok ...' or 'FAIL ...'}."""
    checks = {}
    for line in output.splitlines():
        status, rest = line.split(" ", 1)
        name, detail = rest.strip().split(": ", 1)
        checks.setdefault(name, f"{status} {detail}")
    return checks


# setup ######################################################################


def test_setup_twice_creates_one_meter_and_one_product(run, dodo_server: FakeDodo) -> None:
    first = run("setup")
    second = run("setup")

    assert (first.code, second.code) == (0, 0), first.err + second.err
    assert len(dodo_server.meters) == 1 and len(dodo_server.products) == 1
    meter, product = dodo_server.meters[0], dodo_server.products[0]
    assert meter["name"] == "Image Generation Meter"
    assert meter["event_name"] == "image.generated"
    assert meter["filter"] == TUTORIAL_FILTER
    assert product["name"] == "PixelGen AI - Image Generation"
    assert product["price"]["type"] == "usage_based_price"
    assert (product["price"]["fixed_price"], product["price"]["currency"]) == (0, "USD")
    assert product["price"]["payment_frequency_interval"] == "Month"
    assert product["price"]["meters"] == [
        {"meter_id": meter["id"], "price_per_unit": "5", "free_threshold": 10}
    ]
    link = f"https://test.checkout.dodopayments.com/buy/{product['product_id']}?quantity=1"
    assert f"Meter created:   {meter['id']}" in first.out and f"Meter exists:    {meter['id']}" in second.out
    assert link in first.out and link in second.out
    assert f"Product exists:  {product['product_id']}" in second.out


def test_setup_finds_a_meter_on_the_second_page(run, dodo_server: FakeDodo) -> None:
    for n in range(150):
        dodo_server.add_meter(f"other {n}", f"other.event.{n}")
    existing = dodo_server.add_meter("Image Generation Meter", "image.generated", TUTORIAL_FILTER)

    result = run("setup")

    assert result.code == 0
    assert f"Meter exists:    {existing['id']}" in result.out
    assert len(dodo_server.meters) == 151
    pages = [int(r.query["page_number"]) for r in dodo_server.calls("GET", "/meters")]
    assert pages == [0, 1]


def test_setup_with_a_bad_key_says_so(run, dodo_server: FakeDodo) -> None:
    dodo_server.api_key = "someone_elses_key"
    result = run("setup")
    assert result.code == 1
    assert result.err.startswith("Error: cannot list meters: Dodo rejected DODO_PAYMENTS_API_KEY")
    assert dodo_server.meters == []


# doctor #####################################################################


@pytest.fixture
def tutorial_done(dodo_server: FakeDodo) -> FakeDodo:
    """The dashboard as the tutorial leaves it: many meters, ours among them on page 2."""
    for n in range(120):
        dodo_server.add_meter(f"other {n}", f"other.event.{n}")
    dodo_server.add_meter("Image Generation Meter", "image.generated", TUTORIAL_FILTER)
    return dodo_server


def test_doctor_passes_every_check_when_the_tutorial_is_done(
    run, tutorial_done: FakeDodo, openai_server: FakeOpenAI
) -> None:
    result = run("doctor")

    assert result.code == 0, result.out
    checks = lines_of(result.out)
    assert list(checks) == ["configuration", "dodo key", "customer", "meter", "openai", "journal"]
    assert all(line.startswith("ok") for line in checks.values())
    assert f"{CUSTOMER} (test@example.com) exists" in checks["customer"]
    # It makes no image and sends no usage event.
    assert openai_server.calls("POST", "/v1/images/generations") == []
    assert tutorial_done.calls("POST", "/events/ingest") == []


def test_doctor_names_every_configuration_problem_and_skips_the_network(
    run, monkeypatch: pytest.MonkeyPatch, dodo_server: FakeDodo, openai_server: FakeOpenAI
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("DODO_PAYMENTS_CUSTOMER_ID")
    result = run("doctor")

    assert result.code == 1
    assert "FAIL configuration: OPENAI_API_KEY is not set" in result.out
    assert "FAIL configuration: DODO_PAYMENTS_CUSTOMER_ID is not set" in result.out
    assert "FAIL openai: skipped" in result.out
    assert dodo_server.requests == [] and openai_server.requests == []


def test_doctor_explains_a_key_for_the_other_environment(run, tutorial_done: FakeDodo) -> None:
    tutorial_done.api_key = "a_live_mode_key"
    checks = lines_of(run("doctor").out)
    assert checks["dodo key"].startswith("FAIL Dodo rejected DODO_PAYMENTS_API_KEY")
    assert "a test key works only with test_mode, a live key only with live_mode" in checks["dodo key"]


def test_doctor_names_a_customer_that_does_not_exist(
    run, monkeypatch: pytest.MonkeyPatch, tutorial_done: FakeDodo
) -> None:
    monkeypatch.setenv("DODO_PAYMENTS_CUSTOMER_ID", "cus_typo")
    result = run("doctor")
    checks = lines_of(result.out)
    assert result.code == 1
    assert checks["dodo key"].startswith("ok")
    assert checks["customer"].startswith("FAIL customer cus_typo was not found in test_mode")


@pytest.mark.parametrize(
    ("event_name", "meter_filter", "diagnosis"),
    [
        (
            "Image.Generated",
            TUTORIAL_FILTER,
            "listens for 'Image.Generated', but events are named 'image.generated'",
        ),
        (
            "image.generated",
            {"conjunction": "or", "clauses": [{"key": "Quality", "operator": "equals", "value": "standard"}]},
            "filters on 'Quality', but the key is 'quality'",
        ),
        (
            "image.generated",
            {"conjunction": "and", "clauses": TUTORIAL_FILTER["clauses"]},
            "joins its conditions with AND, so no event can match",
        ),
        (
            "image.generated",
            {"conjunction": "or", "clauses": [{"key": "quality", "operator": "equals", "value": "HD"}]},
            "compares quality with 'HD', but events carry 'hd'",
        ),
        (
            "image.generated",
            {"conjunction": "or", "clauses": [{"key": "quality", "operator": "equals", "value": "standard"}]},
            "does not count events with quality hd",
        ),
        ("api.call", None, "no meter counts 'image.generated' events: run `python pixelgen.py setup`"),
    ],
)
def test_doctor_names_a_near_miss_meter_and_the_fix(
    run, dodo_server: FakeDodo, event_name: str, meter_filter: dict | None, diagnosis: str
) -> None:
    if event_name == "Image.Generated":
        fix = "change its event name to image.generated"
    elif meter_filter is None:
        fix = "run `python pixelgen.py setup`"
    else:
        fix = "set the filter to OR: quality equals standard, quality equals hd"
    dodo_server.add_meter("Image Generation Meter", event_name, meter_filter)
    result = run("doctor")
    checks = lines_of(result.out)
    assert result.code == 1
    assert checks["meter"].startswith("FAIL")
    assert diagnosis in checks["meter"]
    assert fix in checks["meter"]


def test_a_meter_without_a_filter_counts_everything(run, dodo_server: FakeDodo) -> None:
    dodo_server.add_meter("All images", "image.generated", None)
    assert lines_of(run("doctor").out)["meter"].startswith("ok")


def test_doctor_tells_a_bad_openai_key_from_an_unknown_model(
    run, monkeypatch: pytest.MonkeyPatch, tutorial_done: FakeDodo
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    assert (
        lines_of(run("doctor").out)["openai"] == "FAIL OpenAI rejected OPENAI_API_KEY: check the key in .env"
    )

    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("PIXELGEN_MODEL", "gpt-image-2.6-nonexistent")
    line = lines_of(run("doctor").out)["openai"]
    assert line.startswith("FAIL the key works, but OpenAI does not serve gpt-image-2.6-nonexistent")


def test_doctor_shows_pending_and_rejected_events_with_reasons(
    run, monkeypatch: pytest.MonkeyPatch, tutorial_done: FakeDodo
) -> None:
    journal = pixelgen.Journal(Path("pixelgen.db"))
    now = datetime.now(timezone.utc)
    for n in range(3):
        journal.record(
            pixelgen.UsageEvent(f"evt-{n}", CUSTOMER, "hd", "gpt-image-2", pixelgen.format_timestamp(now))
        )
    journal.mark_rejected("evt-0", "Dodo answered 400: customer_id does not exist")

    line = lines_of(run("doctor").out)["journal"]

    assert "0 delivered, 2 pending, 1 rejected" in line
    assert "1 rejected because Dodo answered 400: customer_id does not exist" in line
    assert "run `python pixelgen.py flush`" in line
    assert tutorial_done.calls("POST", "/events/ingest") == []  # doctor does not flush


# the remote bill ############################################################


def test_the_remote_bill_counts_what_dodo_holds_and_explains_the_difference(
    run, monkeypatch: pytest.MonkeyPatch, dodo_server: FakeDodo
) -> None:
    for n in range(3):
        assert run("--prompt", f"robot {n}").code == 0
    now = datetime.now(timezone.utc)
    stamp = pixelgen.format_timestamp(now)
    elsewhere = {"customer_id": CUSTOMER, "event_name": "image.generated", "timestamp": stamp}
    dodo_server.events["from-laptop"] = {
        **elsewhere,
        "event_id": "from-laptop",
        "metadata": {"quality": "hd"},
    }
    dodo_server.events["old-app"] = {**elsewhere, "event_id": "old-app", "metadata": {"quality": "HD"}}
    dodo_server.events["other-customer"] = {**elsewhere, "event_id": "other-customer", "customer_id": "cus_x"}
    monkeypatch.setenv("DODO_PAYMENTS_BASE_URL", closed_port_url())
    run("--prompt", "robot offline")  # stays pending
    monkeypatch.setenv("DODO_PAYMENTS_BASE_URL", dodo_server.url)
    dodo_server.failures = []

    as_json = run("usage", "--remote", "--json")
    as_text = run("usage", "--remote")

    report = json.loads(as_json.out)
    assert (report["images"], report["pending"], report["remote_images"]) == (4, 1, 5)
    assert "Dodo: 5 image.generated events; journal: 4 images." in as_text.out
    assert "1 are still pending here" in as_text.out
    assert "2 were sent from another machine or journal" in as_text.out
    assert "1 carry no quality standard or hd" in as_text.out
    listing = dodo_server.calls("GET", "/events")[0].query
    assert (listing["customer_id"], listing["event_name"], listing["page_number"]) == (
        CUSTOMER,
        "image.generated",
        "0",
    )


def test_the_remote_bill_pages_through_many_events(run, dodo_server: FakeDodo) -> None:
    stamp = pixelgen.format_timestamp(datetime.now(timezone.utc))
    for n in range(230):
        dodo_server.events[f"e{n}"] = {
            "event_id": f"e{n}",
            "customer_id": CUSTOMER,
            "event_name": "image.generated",
            "timestamp": stamp,
            "metadata": {"quality": "standard"},
        }
    report = json.loads(run("usage", "--remote", "--json").out)
    assert report["remote_images"] == 230
    assert [r.query["page_number"] for r in dodo_server.calls("GET", "/events")] == ["0", "1", "2"]


def test_the_remote_bill_falls_back_to_the_local_one_when_dodo_is_down(
    run, monkeypatch: pytest.MonkeyPatch
) -> None:
    run("--prompt", "robot")
    monkeypatch.setenv("DODO_PAYMENTS_BASE_URL", closed_port_url())

    result = run("usage", "--remote", "--json")

    assert result.code == 0
    assert json.loads(result.out)["images"] == 1
    assert json.loads(result.out)["remote_images"] is None
    assert "Error: cannot list events: Dodo is unreachable" in result.err
    assert "showing the local bill only" in result.err


def test_doctor_reports_a_journal_it_cannot_read(run, tutorial_done: FakeDodo) -> None:
    Path("pixelgen.db").write_text("not a database\n" * 100)
    result = run("doctor")
    assert result.code == 1
    assert lines_of(result.out)["journal"] == "FAIL cannot read pixelgen.db: file is not a database"


def test_doctor_says_when_openai_cannot_be_reached(
    run, monkeypatch: pytest.MonkeyPatch, tutorial_done: FakeDodo
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", closed_port_url() + "/v1")
    checks = lines_of(run("doctor").out)
    assert checks["openai"] == "FAIL could not reach OpenAI: check your network or OPENAI_BASE_URL"
    assert checks["meter"].startswith("ok")
