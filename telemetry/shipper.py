"""The shipper: from the outbox to the service centre, as gzip-compressed OTLP/HTTP JSON, losing nothing.

It is handed a ready `requests.Session` (the agent builds the one pinned mutual-TLS session; tests build
their own) and the receiver's base URL. `push` sends batches, highest priority first, until the outbox is
empty, and acknowledges each record only after the receiver accepted it (at-least-once; the receiver
de-duplicates by device and `servicegate.sequence`).

What each answer means (OTLP/HTTP's rules, and never dropping a record):

- **2xx**: the records are acknowledged (deleted from the outbox); a `partialSuccess` is noted in the status.
- **429, 502, 503, 504, no connection, a timeout**: retried after `Retry-After` when the receiver gives one
  (at least a second), else after an exponential backoff with full jitter capped at 10 minutes; for as long
  as it takes (a record is never given up because of time), until `stop` is set.
- **413**: the batch is halved and sent again; a single record still too large is quarantined.
- **400**: the receiver refused the data as malformed: those records are quarantined in the outbox (kept,
  never sent again, reported by a record of their own) and the push stops; the next push goes on.
- **any other status** (401, 403, 404, 500, ...): not retried within this push and nothing quarantined: the
  push stops with the error, the records stay, and the next scheduled push tries again.
"""

from __future__ import annotations

import gzip
import json
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import requests

from telemetry import otlp
from telemetry.outbox import Outbox, Record

RETRYABLE = frozenset({429, 502, 503, 504})
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 600.0
RETRY_AFTER_MIN_S = 1.0
TIMEOUT_S = (10.0, 30.0)  # connect, read: a hanging receiver is a failed attempt, retried
MAX_ERROR_TEXT = 200
T = TypeVar("T")


@dataclass(frozen=True)
class PushResult:
    sent: int  # records the receiver accepted (acknowledged in the outbox)
    quarantined: int
    attempts: int  # HTTP requests made
    error: str | None  # why the push stopped early, if it did


class _Refused(Exception):
    """The receiver refused a request (carrying `records`) in a way that is not retried."""

    def __init__(self, status: int, message: str, records: list[Record]) -> None:
        super().__init__(message)
        self.status, self.records = status, records


class _Retry(Exception):
    def __init__(self, message: str, delay_s: float | None) -> None:
        super().__init__(message)
        self.delay_s = delay_s


class Shipper:
    def __init__(self, outbox: Outbox, session: requests.Session, base_url: str, resource: Mapping[str, Any], *,
                 batch_records: int = 500, batch_bytes: int = 4 * 1024 * 1024,
                 timeout_s: tuple[float, float] = TIMEOUT_S, stop: threading.Event | None = None,
                 rng: Callable[[], float] = random.random,
                 wait: Callable[[float], None] | None = None) -> None:
        self.outbox, self.session, self.resource = outbox, session, dict(resource)
        self.base_url = base_url.rstrip("/")
        self.batch_records, self.batch_bytes, self.timeout_s = batch_records, batch_bytes, timeout_s
        self.stop = stop or threading.Event()
        self._rng = rng
        self._wait = wait or (lambda seconds: self.stop.wait(seconds))  # a shutdown ends a wait at once

    def push(self) -> PushResult:
        """Send until the outbox is empty, `stop` is set, or a configuration error stops it (see the table)."""
        sent = quarantined = attempts = failures = 0
        limit = self.batch_records
        while not self.stop.is_set():
            batch = self.outbox.batch(max_records=limit, max_bytes=self.batch_bytes)
            if not batch:
                return PushResult(sent, quarantined, attempts, None)
            try:
                for path, records in self._by_endpoint(batch):
                    attempts += 1
                    self._post(path, records)
                    self.outbox.ack([r.sequence for r in records])
                    sent += len(records)
                failures, limit = 0, self.batch_records
            except _Retry as exc:
                failures += 1
                self.outbox.note_error(str(exc))
                self._wait(exc.delay_s if exc.delay_s is not None else self.backoff_s(failures))
            except _Refused as exc:
                if exc.status == 413 and len(exc.records) > 1:
                    limit = max(1, len(exc.records) // 2)
                    continue
                self.outbox.note_error(str(exc))
                if exc.status in (400, 413):
                    self.outbox.quarantine([r.sequence for r in exc.records], str(exc))
                    quarantined += len(exc.records)
                return PushResult(sent, quarantined, attempts, str(exc))
        return PushResult(sent, quarantined, attempts, "stopped")

    def backoff_s(self, failures: int) -> float:
        return full_jitter(failures, self._rng)

    def _by_endpoint(self, batch: list[Record]) -> list[tuple[str, list[Record]]]:
        metrics = [r for r in batch if r.kind == "metric"]
        others = [r for r in batch if r.kind != "metric"]
        # The batch comes highest priority first: whatever holds its first record goes first.
        parts = [(otlp.METRICS_PATH, metrics), (otlp.LOGS_PATH, others)]
        parts.sort(key=lambda part: batch.index(part[1][0]) if part[1] else len(batch))
        return [part for part in parts if part[1]]

    def _post(self, path: str, records: list[Record]) -> None:
        document = otlp.metrics_request(records, self.resource) if path == otlp.METRICS_PATH else \
            otlp.logs_request(records, self.resource)
        body = gzip.compress(json.dumps(document, separators=(",", ":")).encode(), compresslevel=6)
        url = self.base_url + path
        response = self._send(url, body)
        status = response.status_code
        if 200 <= status < 300:
            self._note_partial_success(response, url)
            return
        text = f"{url} answered HTTP {status}: {_short(response.text)}"
        if status in RETRYABLE:
            raise _Retry(text, _retry_after(response.headers.get("Retry-After")))
        raise _Refused(status, text, records)

    def _send(self, url: str, body: bytes) -> requests.Response:
        """POST, and give up waiting the moment `stop` is set: the agent's shutdown never waits for a request
        (the records it carried stay in the outbox)."""
        try:
            return call_until_stopped(lambda: self.session.post(url, data=body, timeout=self.timeout_s, headers={
                "Content-Type": "application/json", "Content-Encoding": "gzip"}), self.stop)
        except Stopped:
            raise _Retry(f"stopped while waiting for {url}", 0.0) from None
        except requests.RequestException as exc:
            raise _Retry(f"cannot reach {url}: {type(exc).__name__}: {_short(str(exc))}", None) from None
        except OSError as exc:  # the certificate files, e.g. for an instant while the agent renews them
            raise _Retry(f"cannot use the TLS files for {url}: {exc}", None) from None

    def _note_partial_success(self, response: requests.Response, url: str) -> None:
        try:
            answer = response.json()
        except ValueError:
            return  # the receiver accepted; its answer's body is only informational
        partial = answer.get("partialSuccess") if isinstance(answer, dict) else None
        if isinstance(partial, dict) and (partial.get("rejectedDataPoints") or partial.get("rejectedLogRecords")):
            self.outbox.note_error(f"{url} accepted the batch but rejected part of it: "
                                   f"{_short(json.dumps(partial))}")


class Stopped(Exception):
    """`stop` was set while a request was under way; the request is abandoned."""


def call_until_stopped(call: Callable[[], T], stop: threading.Event) -> T:
    """`call()` (a blocking HTTP request) in a thread of its own, so that setting `stop` ends the wait at once even
    while the other end hangs; raises Stopped then, and whatever `call` raised otherwise."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = call()
        except Exception as exc:  # handed to the caller's thread as it is
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="http-request", daemon=True)
    worker.start()
    while worker.is_alive() and not stop.is_set():
        worker.join(0.1)
    if worker.is_alive():
        raise Stopped
    if "error" in outcome:
        raise outcome["error"]
    result: T = outcome["result"]
    return result


def full_jitter(failures: int, rng: Callable[[], float] = random.random) -> float:
    """The wait before the next try after `failures` failures in a row: a random time up to an exponential bound
    capped at 10 minutes (full jitter), so that many devices coming back after an outage do not call at once."""
    return float(rng() * min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0 ** min(failures, 30)))


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # "-0000": the date says nothing of its zone; HTTP dates are UTC
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(RETRY_AFTER_MIN_S, min(BACKOFF_CAP_S, seconds))  # never a tight loop, never longer than the cap


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_TEXT else text[:MAX_ERROR_TEXT] + "..."
