"""A user makes images: one-shot, interactively, and with every kind of mistake."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from conftest import closed_port_url, journal_rows
from standins import CUSTOMER, DODO_KEY, OPENAI_KEY, PNG_BYTES, UUID, FakeDodo, FakeOpenAI


def saved_images() -> list[Path]:
    return sorted(Path("images").glob("*.png")) if Path("images").exists() else []


def test_one_shot_makes_an_image_and_bills_it_once(
    run, openai_server: FakeOpenAI, dodo_server: FakeDodo
) -> None:
    result = run("--prompt", "A cute robot painting a landscape", "--quality", "hd")

    assert result.code == 0, result.err
    [image] = saved_images()
    assert image.read_bytes() == PNG_BYTES
    assert "a-cute-robot-painting-a-landscape" in image.name
    assert f"Saved {image}" in result.out
    [sent] = dodo_server.events.values()
    assert sent["event_name"] == "image.generated"
    assert sent["customer_id"] == CUSTOMER
    assert sent["metadata"]["quality"] == "hd"
    assert UUID.match(sent["event_id"])
    assert f"Billed: event {sent['event_id']} (quality hd)" in result.out
    assert "A cute robot" not in str(sent)  # the prompt never goes to Dodo
    [row] = journal_rows()
    assert (row["event_id"], row["status"]) == (sent["event_id"], "delivered")


def test_the_openai_request_fits_gpt_image_models(run, openai_server: FakeOpenAI) -> None:
    run("--prompt", "A sunset over mountains", "--quality", "standard")
    run("--prompt", "A sunset over mountains", "--quality", "hd")

    standard, hd = (call.body for call in openai_server.calls("POST", "/v1/images/generations"))
    assert (standard["quality"], hd["quality"]) == ("medium", "high")
    assert standard["model"] == "gpt-image-2.5-sunburst"
    assert standard["size"] == "1024x1024"
    assert "response_format" not in standard and "style" not in standard
    assert standard["safety_identifier"] == hashlib.sha256(CUSTOMER.encode()).hexdigest()


def test_interactive_session_makes_images_until_a_blank_prompt(run, dodo_server: FakeDodo) -> None:
    script = "A cute robot painting a landscape\n\nA friendly dragon\n ultra \n HD \n\n"
    result = run(stdin=script)

    assert result.code == 0, result.err
    assert "PixelGen AI" in result.out
    assert f"customer {CUSTOMER}" in result.out and "test_mode" in result.out
    assert result.out.count("Please answer standard or hd.") == 1
    assert len(saved_images()) == 2
    qualities = sorted(event["metadata"]["quality"] for event in dodo_server.events.values())
    assert qualities == ["hd", "standard"]
    assert result.out.rstrip().endswith("Session: 2 images, 2 billed, 0 pending.")


@pytest.mark.parametrize("ending", ["quit\n", "EXIT\n", "", "A robot\n"])
def test_interactive_session_ends_cleanly_on_quit_or_end_of_input(
    run, dodo_server: FakeDodo, ending: str
) -> None:
    result = run(stdin=ending)

    assert result.code == 0
    assert "Session: 0 images, 0 billed, 0 pending." in result.out
    assert saved_images() == [] and dodo_server.events == {}


def test_a_refused_prompt_bills_nothing_and_the_session_goes_on(
    run, openai_server: FakeOpenAI, dodo_server: FakeDodo
) -> None:
    openai_server.refuse = True
    result = run(stdin="something against policy\nstandard\n\n")

    assert result.code == 0
    assert "OpenAI declined this prompt under its safety policy" in result.err
    assert result.out.count("Enter your image prompt: ") == 2  # asked again
    assert saved_images() == []
    assert dodo_server.requests == []
    assert journal_rows() == []


def test_a_refusal_in_one_shot_mode_exits_1_with_one_line(
    run, openai_server: FakeOpenAI, dodo_server: FakeDodo
) -> None:
    openai_server.refuse = True
    result = run("--prompt", "something against policy")

    assert result.code == 1
    assert result.err.strip().splitlines() == [
        "Error: OpenAI declined this prompt under its safety policy; try rewording it"
    ]
    assert saved_images() == [] and dodo_server.requests == []


def test_an_openai_server_error_is_not_retried_and_bills_nothing(
    run, openai_server: FakeOpenAI, dodo_server: FakeDodo
) -> None:
    openai_server.fail_status = 500
    result = run("--prompt", "A robot")

    assert result.code == 1
    assert result.err.strip() == "Error: OpenAI had a server error (500); try again"
    # One call only: a retried generation could be a second paid image.
    assert len(openai_server.calls("POST", "/v1/images/generations")) == 1
    assert saved_images() == [] and dodo_server.requests == []


def test_a_wrong_openai_key_is_named(run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key")
    result = run("--prompt", "A robot")

    assert result.code == 1
    assert result.err.strip() == "Error: OpenAI rejected OPENAI_API_KEY: check the key in .env"
    assert "sk-wrong-key" not in result.err


def test_dodo_down_still_saves_the_image_and_keeps_the_event(
    run, monkeypatch: pytest.MonkeyPatch, dodo_server: FakeDodo
) -> None:
    monkeypatch.setenv("DODO_PAYMENTS_BASE_URL", closed_port_url())
    result = run("--prompt", "A robot", "--quality", "hd")

    assert result.code == 0
    assert len(saved_images()) == 1
    assert "Billing pending, will retry: Dodo is unreachable" in result.err
    assert "flush" in result.err
    [row] = journal_rows()
    assert (row["status"], row["quality"], row["attempts"]) == ("pending", "hd", 1)


def test_no_key_appears_in_output_or_files(run, monkeypatch: pytest.MonkeyPatch) -> None:
    outputs = [run("--prompt", "A robot", "--quality", "hd"), run("usage"), run("flush")]
    monkeypatch.setenv("DODO_PAYMENTS_API_KEY", "dodo_test_wrong_key")
    outputs.append(run("--prompt", "A robot"))
    outputs.append(run("flush"))

    text = "".join(r.out + r.err for r in outputs)
    files = b"".join(p.read_bytes() for p in Path(".").rglob("*") if p.is_file())
    for key in (OPENAI_KEY, DODO_KEY, "dodo_test_wrong_key"):
        assert key not in text
        assert key.encode() not in files


# Configuration and flags: exit 2, every problem named, nothing sent ##########


def test_every_missing_setting_is_named_at_once(
    run, monkeypatch: pytest.MonkeyPatch, openai_server: FakeOpenAI, dodo_server: FakeDodo
) -> None:
    for name in ("OPENAI_API_KEY", "DODO_PAYMENTS_API_KEY", "DODO_PAYMENTS_CUSTOMER_ID"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("DODO_PAYMENTS_ENVIRONMENT", "test")
    result = run("--prompt", "A robot")

    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("Error: OPENAI_API_KEY is not set")
    assert lines[1].startswith("Error: DODO_PAYMENTS_API_KEY is not set")
    assert lines[2] == "Error: DODO_PAYMENTS_ENVIRONMENT='test' is not valid: use test_mode or live_mode"
    assert lines[3].startswith("Error: DODO_PAYMENTS_CUSTOMER_ID is not set")
    assert openai_server.requests == [] and dodo_server.requests == []
    assert not Path("pixelgen.db").exists()


@pytest.mark.parametrize(
    "model", ["dall-e-3", "dall-e-2", "gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5"]
)
def test_a_retired_model_is_refused_before_any_call(
    run, monkeypatch: pytest.MonkeyPatch, openai_server: FakeOpenAI, model: str
) -> None:
    monkeypatch.setenv("PIXELGEN_MODEL", model)
    result = run("--prompt", "A robot")

    assert result.code == 2
    assert f"PIXELGEN_MODEL={model} was retired by OpenAI on" in result.err
    assert openai_server.requests == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prompt", "A robot", "--quality", "ultra"], "'ultra' is not a quality: use standard or hd"),
        (["--prompt", "   "], "--prompt: the prompt is blank"),
        (["--prompt", "x" * 32_001], "the prompt is 32,001 characters; the model accepts at most 32,000"),
        (["usage", "--month", "2026-13"], "'2026-13' is not a month like 2026-12"),
        (["--quality", "hd"], "--quality goes with --prompt"),
    ],
)
def test_bad_flags_exit_2_before_any_call(
    run, openai_server: FakeOpenAI, args: list[str], message: str
) -> None:
    result = run(*args)

    assert result.code == 2
    assert message in result.err
    assert "Traceback" not in result.err
    assert openai_server.requests == []


def test_quality_flag_ignores_case_and_spaces(run, dodo_server: FakeDodo) -> None:
    assert run("--prompt", "A robot", "--quality", " HD ").code == 0
    [event] = dodo_server.events.values()
    assert event["metadata"]["quality"] == "hd"


def test_customer_flag_overrides_the_environment(run, dodo_server: FakeDodo) -> None:
    run("--prompt", "A robot", "--customer", "cus_other")
    [event] = dodo_server.events.values()
    assert event["customer_id"] == "cus_other"


def test_dotenv_is_read_but_the_environment_wins(
    run, monkeypatch: pytest.MonkeyPatch, dodo_server: FakeDodo
) -> None:
    monkeypatch.delenv("DODO_PAYMENTS_CUSTOMER_ID")
    Path(".env").write_text("DODO_PAYMENTS_CUSTOMER_ID=cus_from_dotenv\nOPENAI_API_KEY=sk-from-dotenv\n")
    try:
        assert run("--prompt", "A robot").code == 0
    finally:
        monkeypatch.delenv("DODO_PAYMENTS_CUSTOMER_ID", raising=False)
    [event] = dodo_server.events.values()
    assert event["customer_id"] == "cus_from_dotenv"  # from .env
    # OPENAI_API_KEY was already set, so the fake key in .env was not used: the call succeeded.


def test_flag_and_configuration_problems_are_reported_together(run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    result = run("--prompt", "  ")

    assert result.code == 2
    assert result.err.splitlines() == [
        "Error: OPENAI_API_KEY is not set: add your OpenAI key to .env",
        "Error: --prompt: the prompt is blank",
    ]
