"""Loopback HTTP servers that stand in for OpenAI and Dodo Payments.

The two SDKs use different HTTP libraries (openai uses httpx2, dodopayments
uses httpx), so the tests talk to real servers on 127.0.0.1 instead of mocking
a transport.  Each server follows the documented rules of the API it stands
for, so a request pixelgen gets wrong fails here the way it would there.
"""

from __future__ import annotations

import base64
import json
import random
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

# A valid 1x1 PNG: what the stand-in "generates".
PNG_BYTES = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)

OPENAI_KEY = "sk-test-fake-openai-key-0000"
DODO_KEY = "dodo_test_fake_key_0000"
CUSTOMER = "cus_test_pixelgen"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class Reply:
    status: int
    body: Any
    delay: float = 0.0
    reset: bool = False  # close the connection without answering


class StandIn:
    """A threaded HTTP server on 127.0.0.1 that records every request."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # answer at once, as a real API server does

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                request = Request(
                    method=self.command,
                    path=url.path,
                    query={k: v[-1] for k, v in parse_qs(url.query).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                with stand_in.lock:
                    stand_in.requests.append(request)
                reply = stand_in.respond(request)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.reset:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                data = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StandIn:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def respond(self, request: Request) -> Reply:
        raise NotImplementedError

    def calls(self, method: str, path: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.method == method and r.path == path]


def error(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"code": code, "message": message})


# OpenAI #####################################################################

CURRENT_MODELS = {"gpt-image-2", "gpt-image-2.5-sunburst", "gpt-image-2.5-flare"}
GPT_IMAGE_QUALITIES = {"low", "medium", "high", "auto"}


class FakeOpenAI(StandIn):
    """POST /v1/images/generations and GET /v1/models/{id}, as GPT image models answer them."""

    def __init__(self) -> None:
        super().__init__()
        self.refuse = False  # answer 400 moderation_blocked
        self.fail_status: int | None = None
        self.delay = 0.0

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def openai_error(self, status: int, code: str, message: str) -> Reply:
        return Reply(status, {"error": {"message": message, "type": "invalid_request_error", "code": code}})

    def respond(self, request: Request) -> Reply:
        if request.headers.get("authorization") != f"Bearer {OPENAI_KEY}":
            return self.openai_error(401, "invalid_api_key", "Incorrect API key provided.")
        if request.method == "GET" and request.path.startswith("/v1/models/"):
            model = request.path.rsplit("/", 1)[1]
            if model not in CURRENT_MODELS:
                return self.openai_error(404, "model_not_found", f"The model '{model}' does not exist")
            return Reply(200, {"id": model, "object": "model", "created": 0, "owned_by": "openai"})
        if request.path != "/v1/images/generations":
            return self.openai_error(404, "not_found", "Unknown endpoint")
        body = request.body
        for legacy in ("response_format", "style"):
            if legacy in body:
                return self.openai_error(400, "unknown_parameter", f"Unknown parameter: '{legacy}'.")
        if body.get("model") not in CURRENT_MODELS:
            return self.openai_error(
                404, "model_not_found", f"The model '{body.get('model')}' does not exist"
            )
        if body.get("quality", "auto") not in GPT_IMAGE_QUALITIES:
            return self.openai_error(400, "invalid_value", f"Invalid value: '{body['quality']}'.")
        if len(body.get("prompt", "")) > 32000:
            return self.openai_error(400, "string_above_max_length", "prompt is too long")
        if self.refuse:
            return self.openai_error(
                400, "moderation_blocked", "Your request was rejected by the safety system."
            )
        if self.fail_status:
            return self.openai_error(self.fail_status, "server_error", "The server had an error.")
        return Reply(
            200,
            {
                "created": int(time.time()),
                "data": [{"b64_json": base64.b64encode(PNG_BYTES).decode()}],
                "output_format": "png",
                "quality": body.get("quality", "auto"),
                "size": body.get("size", "1024x1024"),
            },
            delay=self.delay,
        )


# Dodo Payments ##############################################################


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class FakeDodo(StandIn):
    """Dodo's API for usage events, as its reference documents them."""

    api_key: str = DODO_KEY
    # Replies to use, in order, before any real processing: 500, 429, "reset" or "slow".
    failures: list[int | str] = field(default_factory=list)
    flaky_rate: float = 0.0
    flaky_seed: int = 7
    reject_ids: dict[str, str] = field(default_factory=dict)  # event id -> reason
    name_rejected_ids: bool = True  # whether a 400 message names the event
    slow_seconds: float = 15.0
    stall_after_ingest: float = 0.0  # accept the events, then answer late: the reply is lost

    def __post_init__(self) -> None:
        super().__init__()
        self.events: dict[str, dict[str, Any]] = {}
        self.received_at: dict[str, str] = {}
        self.faults_injected = 0
        self.random = random.Random(self.flaky_seed)
        self.customers: dict[str, dict[str, Any]] = {
            CUSTOMER: {"customer_id": CUSTOMER, "email": "test@example.com", "name": "Test Customer"}
        }
        self.meters: list[dict[str, Any]] = []
        self.products: list[dict[str, Any]] = []

    def add_meter(
        self, name: str, event_name: str, meter_filter: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        meter = {
            "id": f"mtr_{len(self.meters):04d}",
            "business_id": "bus_test",
            "name": name,
            "event_name": event_name,
            "measurement_unit": "images",
            "aggregation": {"type": "count"},
            "filter": meter_filter,
            "created_at": "2026-12-01T00:00:00Z",
            "updated_at": "2026-12-01T00:00:00Z",
        }
        self.meters.append(meter)
        return meter

    def respond(self, request: Request) -> Reply:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return error(401, "UNAUTHORIZED", "Invalid API key")
        with self.lock:
            planned = self.failures.pop(0) if self.failures else None
            if planned is None and self.flaky_rate and self.random.random() < self.flaky_rate:
                planned = self.random.choice([500, "reset", "slow", "lost"])
            self.faults_injected += planned is not None
        if planned == "lost" and request.path == "/events/ingest":
            self.ingest(request.body)  # Dodo has the events, but the answer never arrives
            return Reply(0, None, reset=True)
        if planned == "reset":
            return Reply(0, None, reset=True)
        if planned == "slow":
            return Reply(500, None, delay=self.slow_seconds, reset=True)
        if isinstance(planned, int):
            return error(planned, "INTERNAL_SERVER_ERROR", "Something went wrong")
        if request.method == "POST" and request.path == "/events/ingest":
            reply = self.ingest(request.body)
            reply.delay = self.stall_after_ingest
            return reply
        if request.method == "GET" and request.path.startswith("/customers/"):
            customer = self.customers.get(request.path.rsplit("/", 1)[1])
            if customer is None:
                return error(404, "NOT_FOUND", "Customer not found")
            return Reply(200, {"business_id": "bus_test", "created_at": "2026-12-01T00:00:00Z", **customer})
        if request.path == "/meters":
            if request.method == "POST":
                body = request.body
                return Reply(200, self.add_meter(body["name"], body["event_name"], body.get("filter")))
            return self.page(self.meters, request.query)
        if request.path == "/products":
            if request.method == "POST":
                product = {"product_id": f"pdt_{len(self.products):04d}", **request.body}
                self.products.append(product)
                return Reply(200, self.product_model(product))
            return self.page([self.product_model(p) for p in self.products], request.query)
        if request.method == "GET" and request.path == "/events":
            return self.page(self.list_events(request.query), request.query)
        return error(404, "NOT_FOUND", f"{request.method} {request.path} is not served here")

    @staticmethod
    def page(items: list[Any], query: dict[str, str]) -> Reply:
        """Dodo's page-number pagination: page_number counts from 0, page_size defaults to 10."""
        number, size = int(query.get("page_number", 0)), int(query.get("page_size", 10))
        return Reply(200, {"items": items[number * size : (number + 1) * size]})

    @staticmethod
    def product_model(product: dict[str, Any]) -> dict[str, Any]:
        return {
            "business_id": "bus_test",
            "brand_id": "brd_test",
            "created_at": "2026-12-01T00:00:00Z",
            "updated_at": "2026-12-01T00:00:00Z",
            "is_recurring": False,
            "license_key_enabled": False,
            "metadata": {},
            "entitlements": [],
            "credit_entitlements": [],
            **product,
        }

    def list_events(self, query: dict[str, str]) -> list[dict[str, Any]]:
        start = parse_time(query["start"]) if "start" in query else None
        end = parse_time(query["end"]) if "end" in query else None
        listed = []
        for event_id, event in self.events.items():
            moment = parse_time(event.get("timestamp") or self.received_at[event_id])
            if "customer_id" in query and event["customer_id"] != query["customer_id"]:
                continue
            if "event_name" in query and event["event_name"] != query["event_name"]:
                continue
            if (start and moment < start) or (end and moment >= end):
                continue
            listed.append({"business_id": "bus_test", "timestamp": moment.isoformat(), **event})
        return listed

    def ingest(self, body: Any) -> Reply:
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list) or not 1 <= len(events) <= 1000:
            return error(422, "INVALID_REQUEST", "events must hold between 1 and 1000 events")
        ids = [event.get("event_id") for event in events]
        if len(set(ids)) != len(ids):
            return error(400, "DUPLICATE_EVENT_ID", "duplicate event_id in request")
        now = datetime.now(timezone.utc)
        for event in events:
            problem = self.event_problem(event, now)
            if problem:
                named = f"event {event['event_id']}: " if self.name_rejected_ids else ""
                return error(400, "INVALID_EVENT", named + problem)
        new = 0
        with self.lock:
            for event in events:
                if event["event_id"] not in self.events:  # event_id is the idempotency key
                    self.events[event["event_id"]] = event
                    self.received_at[event["event_id"]] = now.isoformat()
                    new += 1
        return Reply(200, {"ingested_count": new})

    def event_problem(self, event: dict[str, Any], now: datetime) -> str | None:
        if event["event_id"] in self.reject_ids:
            return self.reject_ids[event["event_id"]]
        for name in ("event_id", "customer_id", "event_name"):
            if not isinstance(event.get(name), str) or not event[name]:
                return f"{name} is required"
        if event.get("timestamp") is not None:
            moment = parse_time(event["timestamp"])
            if moment < now - timedelta(hours=1):
                return "timestamp is older than 1 hour"
            if moment > now + timedelta(minutes=5):
                return "timestamp is more than 5 minutes in the future"
        metadata = event.get("metadata") or {}
        if len(metadata) > 50:
            return "metadata has more than 50 keys"
        for key, value in metadata.items():
            if len(key) > 100:
                return "metadata key longer than 100 characters"
            if not isinstance(value, (str, int, float, bool)):
                return "metadata values must be flat"
            if isinstance(value, str) and len(value) > 500:
                return "metadata value longer than 500 characters"
        return None

    def ingest_calls(self) -> list[list[dict[str, Any]]]:
        return [r.body["events"] for r in self.calls("POST", "/events/ingest")]

    def counted_by_tutorial_meter(self) -> list[dict[str, Any]]:
        """Events the tutorial's meter counts: image.generated with quality standard OR hd."""
        return [
            e
            for e in self.events.values()
            if e["event_name"] == "image.generated"
            and (e.get("metadata") or {}).get("quality") in ("standard", "hd")
        ]


UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
