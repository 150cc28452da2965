"""PixelGen AI: generate images with OpenAI and bill each one through Dodo Payments.

A Python port of Dodo Payments' tutorial "Build an AI Image Generator with
Usage-Based Billing".  The user types a prompt and picks a quality; the image
is generated, saved to disk, and one ``image.generated`` usage event is sent to
Dodo's meter.  Every event is written to a local SQLite journal before it is
sent, so an image is billed exactly once even when the network, Dodo or this
process fails.

    python pixelgen.py                      # interactive session
    python pixelgen.py --prompt "..." --quality hd
    python pixelgen.py flush                # deliver pending usage events
    python pixelgen.py usage [--json]       # this month's bill, from the journal
"""

from __future__ import annotations

import argparse
import base64
import calendar
import hashlib
import itertools
import json
import os
import re
import secrets
import signal
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO, TypeVar

if TYPE_CHECKING:  # the SDKs are imported on first use: they take a second to load
    import dodopayments
    import openai

__all__ = [
    "Bill",
    "ConfigError",
    "DeliveryReport",
    "Journal",
    "PixelgenError",
    "Settings",
    "UsageEvent",
    "compute_bill",
    "deliver_pending",
    "ingest_batches",
    "ingest_payload",
    "load_settings",
    "main",
    "openai_quality",
]

# Configuration ##############################################################

Quality = Literal["standard", "hd"]

# The tutorial's two qualities are what the customer chooses and what the meter
# filters on.  GPT image models only know low/medium/high/auto, so each
# tutorial quality maps to one of those for the API call; the event keeps the
# tutorial's word, because the meter's filter compares it exactly.
OpenAIQuality = Literal["low", "medium", "high", "auto"]
OPENAI_QUALITY: dict[Quality, OpenAIQuality] = {"standard": "medium", "hd": "high"}

# OpenAI points DALL-E users here; gpt-image-2 is the other current choice.
DEFAULT_MODEL = "gpt-image-2.5-sunburst"

# Shut-down dates from OpenAI's deprecations page.  A model that has been
# retired fails every call, so it is refused before anything is sent.
RETIRED_MODELS: dict[str, str] = {
    "dall-e-2": "2026-05-12",
    "dall-e-3": "2026-05-12",
    "gpt-image-1": "2026-10-23",
    "gpt-image-1-mini": "2026-12-01",
    "gpt-image-1.5": "2026-12-01",
    "chatgpt-image-latest": "2026-12-01",
}

EVENT_NAME = "image.generated"  # must equal the meter's event name, case and all
ENVIRONMENTS = ("test_mode", "live_mode")
MAX_PROMPT_CHARS = 32_000  # the GPT image models' documented prompt limit
IMAGE_SIZE = "1024x1024"  # the tutorial's size

# A high-quality image can take over two minutes, so reads get five.
OPENAI_TIMEOUT_SECONDS = 300.0
OPENAI_CONNECT_SECONDS = 10.0
# Ingestion is small and fast; when it isn't, the event waits in the journal.
DODO_TIMEOUT_SECONDS = 10.0


class PixelgenError(Exception):
    """Something the user can cause and fix.  ``main`` prints it as one line."""

    exit_code = 1


class ConfigError(PixelgenError):
    """Bad flags or settings, found before any network call."""

    exit_code = 2

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class Settings:
    openai_api_key: str
    dodo_api_key: str
    customer_id: str
    environment: str
    model: str
    output_dir: Path
    journal_path: Path
    free_images: int
    price_per_image: Decimal
    openai_base_url: str | None
    dodo_base_url: str | None


# What each command needs, so `usage` works without API keys.
NEEDS_EVERYTHING = frozenset({"openai", "dodo", "customer", "bill"})


def load_settings(
    environ: Mapping[str, str],
    needs: frozenset[str] = NEEDS_EVERYTHING,
    customer_override: str | None = None,
) -> Settings:
    """Read settings from the environment and report every problem at once."""

    def get(name: str, default: str = "") -> str:
        return environ.get(name, default).strip()

    problems: list[str] = []

    def require(name: str, hint: str) -> str:
        value = get(name)
        if not value:
            problems.append(f"{name} is not set: {hint}")
        return value

    openai_api_key = dodo_api_key = customer_id = ""
    environment = get("DODO_PAYMENTS_ENVIRONMENT", "test_mode")
    model = get("PIXELGEN_MODEL", DEFAULT_MODEL)
    free_images, price = 10, Decimal("0.05")

    if "openai" in needs:
        openai_api_key = require("OPENAI_API_KEY", "add your OpenAI key to .env")
        retired_on = retired_since(model)
        if retired_on:
            problems.append(
                f"PIXELGEN_MODEL={model} was retired by OpenAI on {retired_on}: "
                f"use {DEFAULT_MODEL} or gpt-image-2"
            )
    if "dodo" in needs:
        dodo_api_key = require("DODO_PAYMENTS_API_KEY", "add your Dodo Payments API key to .env")
        if environment not in ENVIRONMENTS:
            problems.append(
                f"DODO_PAYMENTS_ENVIRONMENT={environment!r} is not valid: use test_mode or live_mode"
            )
    if "customer" in needs:
        customer_id = (customer_override or "").strip() or require(
            "DODO_PAYMENTS_CUSTOMER_ID",
            "add the customer ID (cus_...) from your test purchase to .env, or pass --customer",
        )
    if "bill" in needs:
        try:
            free_images = int(get("PIXELGEN_FREE_IMAGES", "10"))
            if free_images < 0:
                raise ValueError
        except ValueError:
            problems.append("PIXELGEN_FREE_IMAGES must be a whole number, 0 or more")
        try:
            price = Decimal(get("PIXELGEN_PRICE_PER_IMAGE", "0.05"))
            if not price.is_finite() or price < 0:
                raise InvalidOperation
        except InvalidOperation:
            problems.append("PIXELGEN_PRICE_PER_IMAGE must be a decimal amount such as 0.05")

    if problems:
        raise ConfigError(problems)
    return Settings(
        openai_api_key=openai_api_key,
        dodo_api_key=dodo_api_key,
        customer_id=customer_id,
        environment=environment,
        model=model,
        output_dir=Path(get("PIXELGEN_OUTPUT_DIR", "images")),
        journal_path=Path(get("PIXELGEN_DB", "pixelgen.db")),
        free_images=free_images,
        price_per_image=price,
        openai_base_url=get("OPENAI_BASE_URL") or None,
        dodo_base_url=get("DODO_PAYMENTS_BASE_URL") or None,
    )


def retired_since(model: str) -> str | None:
    """The shut-down date of a retired model or of one of its dated snapshots."""
    for name, date in RETIRED_MODELS.items():
        if model == name or model.startswith(name + "-20"):
            return date
    return None


def parse_quality(answer: str) -> Quality | None:
    """The tutorial's quality from what a user typed; a blank answer is standard."""
    word = answer.strip().lower() or "standard"
    if word == "standard":
        return "standard"
    if word == "hd":
        return "hd"
    return None


def check_prompt(prompt: str) -> str | None:
    """Why a prompt cannot be sent, or None when it can."""
    if not prompt.strip():
        return "the prompt is blank"
    if len(prompt) > MAX_PROMPT_CHARS:
        return f"the prompt is {len(prompt):,} characters; the model accepts at most {MAX_PROMPT_CHARS:,}"
    return None


# Generating an image ########################################################


class GenerationError(PixelgenError):
    """OpenAI made no image.  Nothing is billed."""


def openai_quality(quality: Quality) -> OpenAIQuality:
    return OPENAI_QUALITY[quality]


def safety_identifier(customer_id: str) -> str:
    # OpenAI asks multi-user apps for a stable per-user id, hashed so that
    # nothing identifying leaves this machine.
    return hashlib.sha256(customer_id.encode()).hexdigest()


def make_openai_client(settings: Settings) -> openai.OpenAI:
    import openai

    # No automatic retries: the SDK would retry a timeout or a 5xx without an
    # idempotency key, and one stalled call could become several paid images.
    # A failed image is reported instead, and the user decides to try again.
    return openai.OpenAI(
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url,
        timeout=openai.Timeout(OPENAI_TIMEOUT_SECONDS, connect=OPENAI_CONNECT_SECONDS),
        max_retries=0,
    )


def generate_image(client: openai.OpenAI, settings: Settings, prompt: str, quality: Quality) -> bytes:
    """Ask OpenAI for one image and return its PNG bytes."""
    import openai

    try:
        response = client.images.generate(
            model=settings.model,
            prompt=prompt,
            quality=openai_quality(quality),
            size=IMAGE_SIZE,
            n=1,
            safety_identifier=safety_identifier(settings.customer_id),
        )
    except openai.APIStatusError as error:
        raise GenerationError(describe_openai_failure(error.status_code, error.code, error.message)) from None
    except openai.APITimeoutError:
        raise GenerationError("OpenAI did not answer in time; try again") from None
    except openai.APIConnectionError:
        raise GenerationError("could not reach OpenAI: check your network or OPENAI_BASE_URL") from None
    b64 = response.data[0].b64_json if response.data else None
    if not b64:
        raise GenerationError("OpenAI answered without an image; try again")
    return base64.b64decode(b64)


def describe_openai_failure(status: int, code: str | None, message: str) -> str:
    """One line that says why OpenAI made no image and what to do about it."""
    if code == "moderation_blocked":
        return "OpenAI declined this prompt under its safety policy; try rewording it"
    if status == 401:
        return "OpenAI rejected OPENAI_API_KEY: check the key in .env"
    if status == 404 or code == "model_not_found":
        return "OpenAI does not serve PIXELGEN_MODEL to this key: use gpt-image-2.5-sunburst or gpt-image-2"
    if status == 429:
        return "OpenAI rate limit or quota reached: wait a moment, or check your OpenAI billing"
    if status >= 500:
        return f"OpenAI had a server error ({status}); try again"
    return f"OpenAI refused the request ({status}): {message}"


class Spinner:
    """Elapsed seconds on stderr while the model works, for people at a terminal."""

    FRAMES = "|/-\\"

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream, self.enabled = stream, enabled
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._spin, daemon=True)

    def __enter__(self) -> Spinner:
        if self.enabled:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.stopped.set()
            self.thread.join()
            self.stream.write("\r\033[K")
            self.stream.flush()

    def _spin(self) -> None:
        started = time.monotonic()
        frame = 0
        while not self.stopped.wait(0.1):
            elapsed = time.monotonic() - started
            self.stream.write(f"\r{self.FRAMES[frame % 4]} Generating image... {elapsed:.0f}s")
            self.stream.flush()
            frame += 1


# Saving it ##################################################################


def image_filename(prompt: str, now: datetime, suffix: str) -> str:
    """A name that sorts by time and hints at the prompt.

    The slug keeps only lowercase letters, digits and dashes, so no prompt can
    name a path outside the output folder.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:40].rstrip("-") or "image"
    return f"{now:%Y%m%d-%H%M%S}-{slug}-{suffix}.png"


def save_image(data: bytes, folder: Path, prompt: str, now: datetime) -> Path:
    """Write the image atomically and never over an existing file."""
    temporary = folder / f".pixelgen-{secrets.token_hex(8)}.tmp"
    try:
        temporary.write_bytes(data)
        while True:
            path = folder / image_filename(prompt, now, secrets.token_hex(3))
            try:
                os.link(temporary, path)  # unlike rename, link refuses to replace a file
                return path
            except FileExistsError:
                continue
            except PermissionError:  # a filesystem without hard links, such as FAT
                if path.exists():
                    continue
                os.replace(temporary, path)
                return path
    except OSError as error:
        raise PixelgenError(
            f"cannot save the image in {folder}: {error.strerror};"
            " set PIXELGEN_OUTPUT_DIR to a writable folder"
        ) from None
    finally:
        temporary.unlink(missing_ok=True)


def prepare_output_dir(folder: Path) -> None:
    """Fail before paying for an image that could not be saved."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PixelgenError(f"cannot create {folder}: {error.strerror}; set PIXELGEN_OUTPUT_DIR") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PixelgenError(f"cannot write to {folder}; set PIXELGEN_OUTPUT_DIR to a writable folder")


@contextmanager
def ctrl_c_ignored() -> Iterator[None]:
    """Ignore Ctrl-C while an image is saved and journaled, so one is never without the other."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# Recording and delivering the usage event ###################################

# Dodo's ingestion rules: at most 1,000 events per request; timestamps more than
# an hour old are rejected.  Events older than STALE_AFTER are sent without a
# timestamp (Dodo then uses the time of receipt) and keep their own time in the
# metadata, so a late event is still billed.  The margin covers clock skew.
INGEST_BATCH_LIMIT = 1000
STALE_AFTER = timedelta(minutes=55)
FUTURE_LIMIT = timedelta(minutes=4)

# Within a session, a failed delivery is retried after a growing pause, so a
# session with billing down runs as fast as one with billing up.
BACKOFF_FIRST_SECONDS = 5.0
BACKOFF_MAX_SECONDS = 300.0


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def format_timestamp(moment: datetime) -> str:
    # One fixed width, so timestamps in the journal sort and compare as text.
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_timestamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class UsageEvent:
    """One billable image.  Its id and time are made once and never change."""

    event_id: str
    customer_id: str
    quality: Quality
    model: str
    created_at: str

    @classmethod
    def new(cls, customer_id: str, quality: Quality, model: str, now: datetime) -> UsageEvent:
        return cls(str(uuid.uuid4()), customer_id, quality, model, format_timestamp(now))


def ingest_payload(event: UsageEvent, now: datetime) -> dict[str, Any]:
    """The event as Dodo's ingest API takes it.  Never the prompt, never a key."""
    metadata: dict[str, str] = {"quality": event.quality, "model": event.model}
    payload: dict[str, Any] = {
        "event_id": event.event_id,
        "customer_id": event.customer_id,
        "event_name": EVENT_NAME,
    }
    created = parse_timestamp(event.created_at)
    if now - STALE_AFTER <= created <= now + FUTURE_LIMIT:
        payload["timestamp"] = event.created_at
    else:
        metadata["generated_at"] = event.created_at
    payload["metadata"] = metadata
    return payload


def ingest_batches(events: Sequence[UsageEvent]) -> list[list[UsageEvent]]:
    """Split events into requests Dodo accepts: at most 1,000, ids unique in each.

    A repeated id inside one request fails the whole request, so a repeat is
    dropped here; across requests Dodo ignores it, which is what we want.
    """
    unique = list({event.event_id: event for event in events}.values())
    return [unique[i : i + INGEST_BATCH_LIMIT] for i in range(0, len(unique), INGEST_BATCH_LIMIT)]


FailureKind = Literal["transient", "auth", "rejected"]


def classify_failure(status: int | None) -> FailureKind:
    """What a failed ingest request means for its events.

    Only 400 and 422 blame the events themselves.  Anything else (no answer,
    429, 5xx, an unexpected 404 from a proxy) leaves them pending: a billable
    image is never dropped because of a fault that may pass.
    """
    if status in (401, 403):
        return "auth"
    if status in (400, 422):
        return "rejected"
    return "transient"


class DodoFailure(Exception):
    """A Dodo call that failed: its kind, one line for the user, and the HTTP status if any."""

    def __init__(self, kind: FailureKind, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.kind, self.reason, self.status = kind, reason, status


AUTH_HINT = (
    "Dodo rejected DODO_PAYMENTS_API_KEY: check the key and DODO_PAYMENTS_ENVIRONMENT "
    "(a test key works only with test_mode, a live key only with live_mode)"
)


@dataclass
class DeliveryReport:
    delivered: int = 0
    rejected: dict[str, str] = field(default_factory=dict)  # event id -> Dodo's reason
    failure: DodoFailure | None = None


# Journal ####################################################################

# The schema grows by appending steps; PRAGMA user_version counts those applied.
MIGRATIONS: list[tuple[str, ...]] = [
    (
        """CREATE TABLE events (
            event_id     TEXT PRIMARY KEY,
            customer_id  TEXT NOT NULL,
            quality      TEXT NOT NULL CHECK (quality IN ('standard', 'hd')),
            model        TEXT NOT NULL,
            created_at   TEXT NOT NULL,
            status       TEXT NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'delivered', 'rejected')),
            attempts     INTEGER NOT NULL DEFAULT 0,
            last_error   TEXT,
            delivered_at TEXT
        )""",
        "CREATE INDEX events_by_status ON events (status, created_at)",
        "CREATE INDEX events_by_customer ON events (customer_id, created_at)",
    ),
]


class Journal:
    """The local record of every billable image and whether Dodo has it.

    WAL lets several pixelgen processes read and write at once; the busy
    timeout makes them wait for each other instead of failing.  Each write is
    one short transaction, and a committed row survives kill -9.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
            if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # enough for process crashes in WAL mode
            self._migrate()
        except sqlite3.Error as error:
            raise PixelgenError(
                f"cannot use the usage journal {path}: {error}; set PIXELGEN_DB to a writable file"
            ) from None

    def _migrate(self) -> None:
        # Always one write, even with nothing to migrate, so that a read-only
        # journal fails here, before an image is paid for, not after.
        with self.transaction():
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    self.db.execute(statement)
            self.db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def record(self, event: UsageEvent) -> None:
        self.db.execute(
            "INSERT INTO events (event_id, customer_id, quality, model, created_at) VALUES (?, ?, ?, ?, ?)",
            (event.event_id, event.customer_id, event.quality, event.model, event.created_at),
        )

    def pending_events(self) -> list[UsageEvent]:
        rows = self.db.execute(
            "SELECT event_id, customer_id, quality, model, created_at FROM events"
            " WHERE status = 'pending' ORDER BY created_at, event_id"
        )
        return [UsageEvent(*row) for row in rows]

    def mark_delivered(self, event_ids: Sequence[str], now: datetime) -> None:
        self._update(event_ids, "status = 'delivered', delivered_at = ?", (format_timestamp(now),))

    def mark_rejected(self, event_id: str, reason: str) -> None:
        self._update([event_id], "status = 'rejected', last_error = ?", (reason,))

    def mark_failed_attempt(self, event_ids: Sequence[str], reason: str) -> None:
        self._update(event_ids, "attempts = attempts + 1, last_error = ?", (reason,))

    def _update(self, event_ids: Sequence[str], assignments: str, values: tuple[object, ...]) -> None:
        # One statement per id in one transaction: an IN list of 1,000 would
        # pass SQLite's 999-variable limit on the builds some Pythons ship.
        with self.transaction():
            self.db.executemany(
                f"UPDATE events SET {assignments} WHERE status = 'pending' AND event_id = ?",
                [(*values, event_id) for event_id in event_ids],
            )

    def status_of(self, event_id: str) -> tuple[str, str | None]:
        status, last_error = self.db.execute(
            "SELECT status, last_error FROM events WHERE event_id = ?", (event_id,)
        ).fetchone()
        return status, last_error

    def count_pending(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM events WHERE status = 'pending'").fetchone()[0])

    def month_statuses(self, customer_id: str, month: str) -> dict[str, str]:
        start, end = month_bounds(month)
        rows = self.db.execute(
            "SELECT event_id, status FROM events"
            " WHERE customer_id = ? AND created_at >= ? AND created_at < ?",
            (customer_id, start, end),
        )
        return dict(rows.fetchall())

    def month_counts(self, customer_id: str, month: str) -> dict[tuple[str, str], int]:
        start, end = month_bounds(month)
        rows = self.db.execute(
            "SELECT quality, status, COUNT(*) FROM events"
            " WHERE customer_id = ? AND created_at >= ? AND created_at < ? GROUP BY quality, status",
            (customer_id, start, end),
        )
        return {(quality, status): count for quality, status, count in rows}


# Delivery ###################################################################

SendBatch = Callable[[list[dict[str, Any]]], None]


def deliver_pending(
    journal: Journal, send: SendBatch, now: Callable[[], datetime] = utc_now
) -> DeliveryReport:
    """Send every pending event, 1,000 to a request, until none is left or Dodo fails.

    A 400 or 422 blames the batch, not necessarily every event in it: the
    event Dodo names, or else the one found by halving the batch, is marked
    rejected with Dodo's reason and the rest are sent again.
    """
    report = DeliveryReport()

    def send_or_split(batch: list[UsageEvent]) -> None:
        try:
            send([ingest_payload(event, now()) for event in batch])
        except DodoFailure as failure:
            if failure.kind != "rejected":
                raise
            named = [event for event in batch if event.event_id in failure.reason]
            if len(batch) == 1 or len(named) == 1:
                culprit = batch[0] if len(batch) == 1 else named[0]
                journal.mark_rejected(culprit.event_id, failure.reason)
                report.rejected[culprit.event_id] = failure.reason
                rest = [event for event in batch if event is not culprit]
                if rest:
                    send_or_split(rest)
                return
            middle = len(batch) // 2
            send_or_split(batch[:middle])
            send_or_split(batch[middle:])
            return
        journal.mark_delivered([event.event_id for event in batch], now())
        report.delivered += len(batch)

    for batch in ingest_batches(journal.pending_events()):
        try:
            send_or_split(batch)
        except DodoFailure as failure:
            journal.mark_failed_attempt([event.event_id for event in batch], failure.reason)
            report.failure = failure
            break
    return report


def make_dodo_client(settings: Settings, max_retries: int) -> dodopayments.DodoPayments:
    import dodopayments

    # The SDK refuses DODO_PAYMENTS_BASE_URL together with environment=, so a
    # base URL (a proxy or a test server) wins when it is set.
    if settings.dodo_base_url:
        where: dict[str, Any] = {"base_url": settings.dodo_base_url}
    else:
        where = {"environment": settings.environment}
    return dodopayments.DodoPayments(
        bearer_token=settings.dodo_api_key, timeout=DODO_TIMEOUT_SECONDS, max_retries=max_retries, **where
    )


def dodo_failure(error: dodopayments.APIError) -> DodoFailure:
    """An SDK error as a failure kind and one line for the user."""
    import dodopayments

    if isinstance(error, dodopayments.APIStatusError):
        kind = classify_failure(error.status_code)
        reason = AUTH_HINT if kind == "auth" else f"Dodo answered {error.status_code}: {dodo_message(error)}"
        return DodoFailure(kind, reason, error.status_code)
    if isinstance(error, dodopayments.APITimeoutError):
        return DodoFailure("transient", "Dodo did not answer in time")
    return DodoFailure("transient", "Dodo is unreachable (network or DODO_PAYMENTS_BASE_URL)")


def make_dodo_sender(settings: Settings, max_retries: int) -> SendBatch:
    import dodopayments

    client = make_dodo_client(settings, max_retries)

    def send(payloads: list[dict[str, Any]]) -> None:
        try:
            client.usage_events.ingest(events=payloads)  # type: ignore[arg-type]
        except dodopayments.APIError as error:
            raise dodo_failure(error) from None

    return send


def dodo_message(error: dodopayments.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return error.message


class Biller:
    """Delivers pending events during a session, pausing after a failure."""

    def __init__(self, journal: Journal, sender: Callable[[], SendBatch]) -> None:
        self.journal, self._make_sender = journal, sender
        self._send: SendBatch | None = None
        self.retry_at = 0.0
        self.pause = 0.0
        self.last_failure: DodoFailure | None = None

    def deliver(self, force: bool = False) -> DeliveryReport | None:
        """Deliver now, or return None while backing off after a failure."""
        if not force and time.monotonic() < self.retry_at:
            return None
        if self._send is None:
            self._send = self._make_sender()
        report = deliver_pending(self.journal, self._send)
        self.last_failure = report.failure
        if report.failure:
            self.pause = min(max(self.pause * 2, BACKOFF_FIRST_SECONDS), BACKOFF_MAX_SECONDS)
            self.retry_at = time.monotonic() + self.pause
        else:
            self.pause, self.retry_at = 0.0, 0.0
        return report


# The bill ###################################################################


@dataclass(frozen=True)
class Bill:
    customer_id: str
    month: str
    standard: int
    hd: int
    delivered: int
    pending: int
    rejected: int
    free: int
    price_per_image: Decimal
    currency: str = "USD"

    @property
    def images(self) -> int:
        """Images the meter counts or will count once their events arrive."""
        return self.standard + self.hd

    @property
    def billable(self) -> int:
        return max(0, self.images - self.free)

    @property
    def amount(self) -> Decimal:
        return self.billable * self.price_per_image

    def as_json(self) -> dict[str, object]:
        return {
            "customer_id": self.customer_id,
            "month": self.month,
            "images": self.images,
            "standard": self.standard,
            "hd": self.hd,
            "delivered": self.delivered,
            "pending": self.pending,
            "rejected": self.rejected,
            "free": self.free,
            "billable": self.billable,
            "price_per_image": str(self.price_per_image),
            "amount": str(self.amount),
            "currency": self.currency,
        }


def compute_bill(
    counts: Mapping[tuple[str, str], int], customer_id: str, month: str, free: int, price: Decimal
) -> Bill:
    """The month's bill from journal counts keyed by (quality, status).

    Rejected events never reach the meter, so they are listed but not billed.
    """

    def total(quality: str | None = None, status: str | None = None) -> int:
        return sum(
            n
            for (q, s), n in counts.items()
            if (quality is None or q == quality) and (status is None or s == status)
        )

    return Bill(
        customer_id=customer_id,
        month=month,
        standard=total("standard") - total("standard", "rejected"),
        hd=total("hd") - total("hd", "rejected"),
        delivered=total(status="delivered"),
        pending=total(status="pending"),
        rejected=total(status="rejected"),
        free=free,
        price_per_image=price,
    )


def month_bounds(month: str) -> tuple[str, str]:
    """The UTC start and end of a YYYY-MM month, as journal timestamps."""
    year, number = (int(part) for part in month.split("-"))
    start = datetime(year, number, 1, tzinfo=timezone.utc)
    end = start + timedelta(days=calendar.monthrange(year, number)[1])
    return format_timestamp(start), format_timestamp(end)


def parse_month(text: str) -> str:
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a month like 2026-12")
    return text


def format_bill(bill: Bill) -> str:
    lines = [
        f"PixelGen AI usage for {bill.customer_id}, {bill.month} (UTC)",
        f"  images     {bill.images:>5}  (standard {bill.standard}, hd {bill.hd})",
        f"  delivered  {bill.delivered:>5}  pending {bill.pending}, rejected {bill.rejected}",
        f"  free       {bill.free:>5}",
        f"  billable   {bill.billable:>5}  x ${bill.price_per_image} = ${bill.amount} {bill.currency}",
    ]
    if bill.pending:
        lines.append("Pending events are not on the Dodo meter yet: run `python pixelgen.py flush`.")
    return "\n".join(lines)


# The tutorial's dashboard steps, from the terminal ##########################

# Steps 1 and 2 of the tutorial, word for word, so that `setup` creates what a
# reader would have clicked together and `doctor` can compare against it.
METER_NAME = "Image Generation Meter"
METER_DESCRIPTION = (
    "Tracks each AI image generation request made by customers using our DALL-E powered service"
)
METER_FILTER: dict[str, Any] = {
    "conjunction": "or",
    "clauses": [
        {"key": "quality", "operator": "equals", "value": "standard"},
        {"key": "quality", "operator": "equals", "value": "hd"},
    ],
}
PRODUCT_NAME = "PixelGen AI - Image Generation"
PRODUCT_DESCRIPTION = "AI-powered image generation service with pay-per-use billing"
PAGE_SIZE = 100
T = TypeVar("T")


def all_pages(fetch_page: Callable[[int], Sequence[T] | None]) -> list[T]:
    """Every item of a Dodo list endpoint, asking for each page by number.

    dodopayments 1.123's auto-pager computes the next page as
    (page_number or 1) + 1, so from the first page (0) it jumps to page 2 and
    never sees page 1.  Pages are counted here instead, from 0.
    """
    items: list[T] = []
    for page_number in itertools.count():
        page = list(fetch_page(page_number) or [])
        items.extend(page)
        if len(page) < PAGE_SIZE:
            return items
    raise AssertionError("unreachable")


def list_meters(client: dodopayments.DodoPayments) -> list[Any]:
    return all_pages(lambda n: client.meters.list(page_number=n, page_size=PAGE_SIZE).items)


def filter_matches(meter_filter: Mapping[str, Any] | None, metadata: Mapping[str, object]) -> bool:
    """Whether a meter's filter would count an event with this metadata (no filter counts all)."""
    if not meter_filter:
        return True
    results = []
    for clause in meter_filter.get("clauses") or []:
        if "conjunction" in clause:
            results.append(filter_matches(clause, metadata))
            continue
        actual, operator, expected = metadata.get(clause["key"]), clause["operator"], clause["value"]
        if operator == "equals":
            results.append(actual == expected)
        elif operator == "not_equals":
            results.append(actual is not None and actual != expected)
        elif operator == "contains":
            results.append(isinstance(actual, str) and str(expected) in actual)
        elif operator == "does_not_contain":
            results.append(isinstance(actual, str) and str(expected) not in actual)
        else:  # numeric comparisons never hold for a quality word
            results.append(False)
    return any(results) if meter_filter.get("conjunction") == "or" else all(results)


def meter_problem(meters: Sequence[Mapping[str, Any]]) -> str | None:
    """Why no meter would count pixelgen's events, naming the near miss and the fix."""
    exact = [m for m in meters if m["event_name"] == EVENT_NAME]
    counts_both = [
        m for m in exact if all(filter_matches(m.get("filter"), {"quality": q}) for q in ("standard", "hd"))
    ]
    if counts_both:
        return None
    tutorial_fix = "set the filter to OR: quality equals standard, quality equals hd"
    if not exact:
        near = [m for m in meters if m["event_name"].strip().lower() == EVENT_NAME]
        if near:
            return (
                f"meter {near[0]['name']!r} listens for {near[0]['event_name']!r}, but events are named"
                f" {EVENT_NAME!r} and names are case-sensitive: change its event name to {EVENT_NAME}"
            )
        return f"no meter counts {EVENT_NAME!r} events: run `python pixelgen.py setup`"
    meter = exact[0]
    meter_filter = meter.get("filter") or {}
    conditions = [c for c in meter_filter.get("clauses") or [] if "key" in c]
    for condition in conditions:
        if condition["key"] != "quality" and condition["key"].lower() == "quality":
            return (
                f"meter {meter['name']!r} filters on {condition['key']!r}, but the key is 'quality'"
                f" (case-sensitive): {tutorial_fix}"
            )
        value = condition["value"]
        if isinstance(value, str) and value != value.lower() and value.lower() in ("standard", "hd"):
            return (
                f"meter {meter['name']!r} compares quality with {value!r}, but events carry"
                f" {value.lower()!r} (case-sensitive): {tutorial_fix}"
            )
    if meter_filter.get("conjunction") == "and" and len(conditions) > 1:
        return f"meter {meter['name']!r} joins its conditions with AND, so no event can match: {tutorial_fix}"
    missed = [q for q in ("standard", "hd") if not filter_matches(meter_filter, {"quality": q})]
    return f"meter {meter['name']!r} does not count events with quality {' or '.join(missed)}: {tutorial_fix}"


def as_dict(model: Any) -> dict[str, Any]:
    """An SDK model as plain data, for the pure checks above."""
    return model.to_dict() if hasattr(model, "to_dict") else dict(model)


def price_in_cents(price: Decimal) -> str:
    # Dodo's price_per_unit is "in the lowest denomination": cents for USD.
    return format((price * 100).normalize(), "f")  # "10", never "1E+1"


def checkout_link(settings: Settings, product_id: str) -> str:
    host = (
        "test.checkout.dodopayments.com"
        if settings.environment == "test_mode"
        else "checkout.dodopayments.com"
    )
    return f"https://{host}/buy/{product_id}?quantity=1"


@contextmanager
def dodo_errors(action: str) -> Iterator[None]:
    """Turn a failed Dodo call into one line for the user."""
    import dodopayments

    try:
        yield
    except dodopayments.APIError as error:
        raise PixelgenError(f"{action}: {dodo_failure(error).reason}") from None


def command_setup(args: argparse.Namespace) -> int:
    settings = load_settings(os.environ, needs=frozenset({"dodo", "bill"}))
    client = make_dodo_client(settings, max_retries=2)
    with dodo_errors("cannot list meters"):
        meters = list_meters(client)
    meter = next((m for m in meters if m.event_name == EVENT_NAME), None)
    if meter:
        print(f"Meter exists:    {meter.id} ({meter.name})")
    else:
        with dodo_errors("cannot create the meter"):
            meter = client.meters.create(
                name=METER_NAME,
                description=METER_DESCRIPTION,
                event_name=EVENT_NAME,
                measurement_unit="images",
                aggregation={"type": "count"},
                filter=METER_FILTER,  # type: ignore[arg-type]
            )
        print(f"Meter created:   {meter.id} ({METER_NAME})")
    problem = meter_problem([as_dict(meter)])
    if problem:
        print(f"Warning: {problem}", file=sys.stderr)

    with dodo_errors("cannot list products"):
        products = all_pages(lambda n: client.products.list(page_number=n, page_size=PAGE_SIZE).items)
    product_id = next((p.product_id for p in products if p.name == PRODUCT_NAME), None)
    if product_id:
        print(f"Product exists:  {product_id} ({PRODUCT_NAME})")
    else:
        # Billed monthly; a subscription period of 20 years is Dodo's "until cancelled".
        price = {
            "type": "usage_based_price",
            "currency": "USD",
            "fixed_price": 0,
            "payment_frequency_count": 1,
            "payment_frequency_interval": "Month",
            "subscription_period_count": 20,
            "subscription_period_interval": "Year",
            "meters": [
                {
                    "meter_id": meter.id,
                    "price_per_unit": price_in_cents(settings.price_per_image),
                    "free_threshold": settings.free_images,
                }
            ],
        }
        with dodo_errors("cannot create the product"):
            product = client.products.create(
                name=PRODUCT_NAME,
                description=PRODUCT_DESCRIPTION,
                tax_category="saas",
                price=price,  # type: ignore[arg-type]
            )
        product_id = product.product_id
        print(f"Product created: {product_id} ({PRODUCT_NAME})")
    print(f"Test purchase (Step 3): {checkout_link(settings, product_id)}")
    print(
        "Then put the new customer's ID in .env as DODO_PAYMENTS_CUSTOMER_ID"
        " and run `python pixelgen.py doctor`."
    )
    return 0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def command_doctor(args: argparse.Namespace) -> int:
    checks = run_checks(os.environ)
    for check in checks:
        print(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
    return 0 if all(check.ok for check in checks) else 1


def run_checks(environ: Mapping[str, str]) -> list[Check]:
    import openai

    checks: list[Check] = []
    try:
        load_settings(environ)
        checks.append(Check("configuration", True, "every setting is present and valid"))
    except ConfigError as error:
        checks.extend(Check("configuration", False, problem) for problem in error.problems)

    def settings_for(*needs: str) -> Settings | None:
        try:
            return load_settings(environ, needs=frozenset(needs))
        except ConfigError:
            return None  # already named by the configuration check

    settings = settings_for("dodo", "customer")
    if settings is None:
        checks.append(Check("dodo", False, "skipped: fix the configuration first"))
    else:
        checks.extend(dodo_checks(make_dodo_client(settings, max_retries=1), settings))

    settings = settings_for("openai")
    if settings is None:
        checks.append(Check("openai", False, "skipped: fix the configuration first"))
    else:
        try:
            make_openai_client(settings).models.retrieve(settings.model, timeout=30)
            checks.append(Check("openai", True, f"the key works and {settings.model} is available"))
        except openai.APIStatusError as error:
            if error.status_code == 401:
                detail = "OpenAI rejected OPENAI_API_KEY: check the key in .env"
            elif error.status_code == 404:
                detail = (
                    f"the key works, but OpenAI does not serve {settings.model} (retired, misspelled, or not"
                    f" enabled for this key): set PIXELGEN_MODEL to {DEFAULT_MODEL} or gpt-image-2"
                )
            else:
                detail = describe_openai_failure(error.status_code, error.code, error.message)
            checks.append(Check("openai", False, detail))
        except openai.APIConnectionError:
            checks.append(
                Check("openai", False, "could not reach OpenAI: check your network or OPENAI_BASE_URL")
            )

    checks.append(journal_check(load_settings(environ, needs=frozenset()).journal_path))
    return checks


def dodo_checks(client: dodopayments.DodoPayments, settings: Settings) -> list[Check]:
    import dodopayments

    where = settings.dodo_base_url or settings.environment
    try:
        customer = client.customers.retrieve(settings.customer_id)
        checks = [
            Check("dodo key", True, f"accepted by {where}"),
            Check("customer", True, f"{customer.customer_id} ({customer.email}) exists in {where}"),
        ]
    except dodopayments.APIError as error:
        failure = dodo_failure(error)
        if failure.status == 404:
            checks = [
                Check("dodo key", True, f"accepted by {where}"),
                Check(
                    "customer",
                    False,
                    f"customer {settings.customer_id} was not found in {settings.environment} (test and live"
                    " customers are separate): copy the cus_... ID from your test purchase into .env",
                ),
            ]
        else:
            return [Check("dodo key", False, failure.reason), Check("customer", False, "skipped")]
    try:
        meters = list_meters(client)
    except dodopayments.APIError as error:
        return [*checks, Check("meter", False, dodo_failure(error).reason)]
    problem = meter_problem([as_dict(m) for m in meters])
    detail = f"a meter counts {EVENT_NAME} events with quality standard and hd"
    return [*checks, Check("meter", problem is None, problem or detail)]


def journal_check(path: Path) -> Check:
    if not path.exists():
        return Check("journal", True, f"{path} will be created with the first image")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        counts = dict(db.execute("SELECT status, COUNT(*) FROM events GROUP BY status").fetchall())
        reasons = db.execute(
            "SELECT last_error, COUNT(*) FROM events WHERE status = 'rejected' GROUP BY last_error"
        ).fetchall()
        db.close()
    except sqlite3.Error as error:
        return Check("journal", False, f"cannot read {path}: {error}")
    delivered, pending, rejected = (counts.get(status, 0) for status in ("delivered", "pending", "rejected"))
    detail = f"{path}: {delivered} delivered, {pending} pending, {rejected} rejected"
    for reason, count in reasons:
        detail += f"; {count} rejected because {reason}"
    if pending:
        detail += "; run `python pixelgen.py flush`"
    return Check("journal", True, detail)  # readable is healthy; the counts are for the reader


def remote_image_events(settings: Settings, month: str) -> list[dict[str, Any]]:
    """The customer's image.generated events that Dodo holds for the month."""
    client = make_dodo_client(settings, max_retries=1)
    start, end = month_bounds(month)
    with dodo_errors("cannot list events"):
        events = all_pages(
            lambda n: (
                client.usage_events.list(
                    customer_id=settings.customer_id,
                    event_name=EVENT_NAME,
                    start=start,
                    end=end,
                    page_number=n,
                    page_size=PAGE_SIZE,
                ).items
            )
        )
    return [as_dict(event) for event in events]


def explain_remote(
    local: Bill, local_status: Mapping[str, str], remote: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Why Dodo's count and the journal's may differ."""
    remote_ids = {event["event_id"] for event in remote}
    delivered = {event_id for event_id, status in local_status.items() if status == "delivered"}
    lines = [f"Dodo: {len(remote)} {EVENT_NAME} events; journal: {local.images} images."]
    if local.pending:
        lines.append(f"  {local.pending} are still pending here: run `python pixelgen.py flush`.")
    if elsewhere := len(remote_ids - set(local_status)):
        lines.append(f"  {elsewhere} were sent from another machine or journal.")
    if missing := len(delivered - remote_ids):
        lines.append(
            f"  {missing} delivered events are not listed for this month: sent over an hour late,"
            " they carry the time Dodo received them."
        )
    uncounted = [e for e in remote if (e.get("metadata") or {}).get("quality") not in ("standard", "hd")]
    if uncounted:
        lines.append(
            f"  {len(uncounted)} carry no quality standard or hd: the tutorial's meter would not count them."
        )
    if len(lines) == 1:
        lines[0] += " They agree."
    return lines


# Command line ###############################################################


@dataclass
class App:
    """What one run of pixelgen holds: settings, the journal, and the SDK clients once needed."""

    settings: Settings
    journal: Journal
    _openai: openai.OpenAI | None = None
    biller: Biller = field(init=False)

    def __post_init__(self) -> None:
        self.biller = Biller(self.journal, lambda: make_dodo_sender(self.settings, max_retries=0))

    def generate(self, prompt: str, quality: Quality, spinner: bool) -> bytes:
        with Spinner(sys.stderr, enabled=spinner):  # from the start: the first call also loads the SDK
            if self._openai is None:
                self._openai = make_openai_client(self.settings)
            return generate_image(self._openai, self.settings, prompt, quality)

    def keep(self, image: bytes, prompt: str, quality: Quality) -> tuple[Path, UsageEvent]:
        """Save the image, then journal its event before anything is sent."""
        now = utc_now()
        with ctrl_c_ignored():
            path = save_image(image, self.settings.output_dir, prompt, now)
            event = UsageEvent.new(self.settings.customer_id, quality, self.settings.model, now)
            try:
                self.journal.record(event)
            except sqlite3.Error as error:
                raise PixelgenError(
                    f"saved {path}, but could not record its usage event in {self.journal.path}: {error}"
                ) from None
        print(f"Saved {path}")
        return path, event

    def bill(self, event: UsageEvent) -> str:
        """Deliver pending events (unless backing off) and say what became of this one."""
        with suppress(KeyboardInterrupt):  # Ctrl-C here leaves the event pending in the journal
            self.biller.deliver()
        status, reason = self.journal.status_of(event.event_id)
        if status == "delivered":
            print(f"Billed: event {event.event_id} (quality {event.quality})")
        elif status == "rejected":
            print(f"Billing rejected by Dodo for event {event.event_id}: {reason}", file=sys.stderr)
        else:
            last = self.biller.last_failure
            why = reason or (last.reason if last else "interrupted")
            print(f"Billing pending, will retry: {why}", file=sys.stderr)
        return status


def interactive_session(app: App, stdin: TextIO) -> int:
    settings = app.settings
    spinner = stdin.isatty() and sys.stderr.isatty()
    print("PixelGen AI - Image Generator with Usage Billing")
    print(f"Model {settings.model} | Dodo {settings.environment} | customer {settings.customer_id}")
    print("A blank prompt, 'quit' or Ctrl-D ends the session.\n")
    session_events: list[str] = []
    while True:
        prompt = ask("Enter your image prompt: ")
        if prompt is None or prompt.strip().lower() in ("", "quit", "exit"):
            break
        problem = check_prompt(prompt)
        if problem:
            print(f"Error: {problem}", file=sys.stderr)
            continue
        quality: Quality | None = None
        while quality is None:
            answer = ask("Quality [standard/hd]: ")
            if answer is None:
                break
            quality = parse_quality(answer)
            if quality is None:
                print("Please answer standard or hd.")
        if quality is None:
            break
        try:
            image = app.generate(prompt.strip(), quality, spinner)
        except KeyboardInterrupt:
            print("\nCancelled; nothing was billed.", file=sys.stderr)
            continue
        except GenerationError as error:
            print(f"Error: no image: {error}", file=sys.stderr)
            continue
        _, event = app.keep(image, prompt, quality)
        app.bill(event)
        session_events.append(event.event_id)
    if app.journal.count_pending():
        with suppress(KeyboardInterrupt):
            app.biller.deliver(force=True)  # the session's last chance; flush is the next
    print()
    print(session_summary(app.journal, session_events))
    return 0


def ask(question: str) -> str | None:
    """One line from the user; None for end of input or Ctrl-C."""
    try:
        return input(question)
    except (EOFError, KeyboardInterrupt):
        return None


def session_summary(journal: Journal, session_events: list[str]) -> str:
    statuses = [journal.status_of(event_id)[0] for event_id in session_events]
    summary = (
        f"Session: {counted(len(statuses), 'image')}, {statuses.count('delivered')} billed,"
        f" {statuses.count('pending')} pending"
    )
    if "rejected" in statuses:
        summary += f", {statuses.count('rejected')} rejected"
    if pending := journal.count_pending():
        summary += f". {counted(pending, 'event')} in the journal: run `python pixelgen.py flush`"
    return summary + "."


def counted(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def command_generate(args: argparse.Namespace) -> int:
    flag_problems = []
    if args.prompt is not None and (problem := check_prompt(args.prompt)):
        flag_problems.append(f"--prompt: {problem}")
    if args.prompt is None and args.quality is not None:
        flag_problems.append("--quality goes with --prompt; the interactive session asks for each image")
    try:
        settings = load_settings(os.environ, customer_override=args.customer)
    except ConfigError as error:
        raise ConfigError(error.problems + flag_problems) from None
    if flag_problems:
        raise ConfigError(flag_problems)
    prepare_output_dir(settings.output_dir)
    app = App(settings, Journal(settings.journal_path))
    if args.prompt is None:
        return interactive_session(app, sys.stdin)
    quality: Quality = args.quality or "standard"
    try:
        image = app.generate(args.prompt.strip(), quality, sys.stderr.isatty())
    except KeyboardInterrupt:
        print("Cancelled; nothing was billed.", file=sys.stderr)
        return 130
    _, event = app.keep(image, args.prompt, quality)
    if app.bill(event) == "pending":
        print("The event is safe in the journal; `python pixelgen.py flush` sends it.", file=sys.stderr)
    return 0


def command_flush(args: argparse.Namespace) -> int:
    settings = load_settings(os.environ, needs=frozenset({"dodo"}))
    journal = Journal(settings.journal_path)
    # Here the SDK may retry: every event keeps its id, which Dodo treats as
    # an idempotency key, so a repeated request cannot bill twice.
    report = deliver_pending(journal, make_dodo_sender(settings, max_retries=2))
    for event_id, reason in report.rejected.items():
        print(f"Rejected by Dodo, event {event_id}: {reason}", file=sys.stderr)
    pending = journal.count_pending()
    print(f"Delivered {counted(report.delivered, 'event')}; {pending} pending.")
    if pending:
        reason = report.failure.reason if report.failure else "another process is sending them"
        print(f"Error: {counted(pending, 'event')} still pending: {reason}", file=sys.stderr)
        return 1
    return 0


def command_usage(args: argparse.Namespace) -> int:
    needs = {"customer", "bill", "dodo"} if args.remote else {"customer", "bill"}
    settings = load_settings(os.environ, needs=frozenset(needs), customer_override=args.customer)
    month = args.month or f"{utc_now():%Y-%m}"
    journal = Journal(settings.journal_path)
    counts = journal.month_counts(settings.customer_id, month)
    bill = compute_bill(counts, settings.customer_id, month, settings.free_images, settings.price_per_image)
    report: dict[str, object] = bill.as_json()
    text = format_bill(bill)
    if args.remote:
        try:
            remote = remote_image_events(settings, month)
        except PixelgenError as error:
            print(f"Error: {error}; showing the local bill only", file=sys.stderr)
            report["remote_images"] = None
        else:
            report["remote_images"] = len(remote)
            text += "\n" + "\n".join(
                explain_remote(bill, journal.month_statuses(settings.customer_id, month), remote)
            )
    print(json.dumps(report) if args.json else text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pixelgen.py",
        description="Generate images with OpenAI and bill each one through Dodo Payments.",
    )
    parser.add_argument("--prompt", help="make one image from this prompt and exit")
    parser.add_argument(
        "--quality",
        type=quality_argument,
        help="standard (default) or hd, with --prompt",
    )
    parser.add_argument("--customer", help="bill this customer instead of DODO_PAYMENTS_CUSTOMER_ID")
    parser.set_defaults(handler=command_generate)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    flush = commands.add_parser("flush", help="deliver pending usage events to Dodo")
    flush.set_defaults(handler=command_flush)

    usage = commands.add_parser("usage", help="this month's images and bill, from the journal")
    usage.add_argument("--month", type=parse_month, help="YYYY-MM, in UTC (default: this month)")
    usage.add_argument("--customer", help="default: DODO_PAYMENTS_CUSTOMER_ID")
    usage.add_argument("--json", action="store_true", help="print one JSON object")
    usage.add_argument("--remote", action="store_true", help="also count the events Dodo holds")
    usage.set_defaults(handler=command_usage)

    setup = commands.add_parser("setup", help="create the tutorial's meter and product in Dodo")
    setup.set_defaults(handler=command_setup)

    doctor = commands.add_parser("doctor", help="check keys, customer, meter, model and journal")
    doctor.set_defaults(handler=command_doctor)
    return parser


def quality_argument(text: str) -> Quality:
    quality = parse_quality(text) if text.strip() else None
    if quality is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a quality: use standard or hd")
    return quality


def main(argv: Sequence[str] | None = None) -> int:
    from dotenv import load_dotenv

    load_dotenv(Path.cwd() / ".env")  # variables already in the environment win
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130
    except PixelgenError as error:
        problems = error.problems if isinstance(error, ConfigError) else [str(error)]
        for problem in problems:
            print(f"Error: {problem}", file=sys.stderr)
        return error.exit_code
    except sqlite3.OperationalError as error:  # the journal's disk filled up, or it stayed locked
        print(f"Error: the usage journal failed: {error}; journaled events are kept", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
