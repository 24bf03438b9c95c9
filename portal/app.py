"""The reference portal's HTTP API (FastAPI): the vendor side of the device protocol, docs/protocol.md.

Which device is calling comes only from the verified TLS client certificate that `portal.tlsproto` puts into
the request scope; the certificate must be the one the portal issued to that device last (or the one before,
while a renewal is being switched to). Every error is JSON `{"detail": "..."}` saying what is wrong and what to
do. `python -m portal.app` prints the OpenAPI document, which is kept as docs/protocol/openapi.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import sys
import tempfile
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from portal import cases, sessions, updates, uploads
from portal.auth import Caller
from portal.pki import CsrError, PortalPki, binding_of
from portal.relay import Relay
from portal.store import MESSAGE_TYPES, EnrollmentRefused, Item, Store

API_VERSION = "1"
MAX_BODY_BYTES = 16 * 1024 * 1024  # a request body, as sent (compressed or not)
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024  # a telemetry document after gzip
MAX_INBOX_WAIT_S = 120
INBOX_POLL_S = 0.25
DEVICE_CERT_DAYS = 90

log = logging.getLogger("servicegate.portal")


# --- messages -----------------------------------------------------------------------------------------------

class CaAnswer(BaseModel):
    ca: str = Field(description="The vendor CA certificate, PEM.")
    sha256: str = Field(description="SHA-256 of the CA certificate's DER form, hex. The device computes it "
                                    "itself and compares it with the fingerprint site IT was given.")


class EnrollRequest(BaseModel):
    device_id: str = Field(min_length=1, max_length=128, description="The ID the vendor registered.")
    otp: str = Field(min_length=1, max_length=64, description="The one-time enrollment password.")
    csr: str = Field(max_length=16384, description="PEM certificate signing request: common name = device ID, "
                                                   "SAN URI urn:servicegate:hardware:<hex>, EC P-256 key.")
    totp_secret: str = Field(pattern=r"^[A-Z2-7]{32}$", description="The device's new 160-bit secret for the "
                                                                    "engineers' one-time passwords (RFC 6238), "
                                                                    "base32.")


class RenewRequest(BaseModel):
    csr: str = Field(max_length=16384, description="A new PEM CSR: same device ID and hardware binding, new key.")


class CertificateAnswer(BaseModel):
    certificate: str = Field(description="The device's client certificate, PEM.")
    ca: str = Field(description="The vendor CA certificate, PEM.")
    not_after: str = Field(description="When the certificate expires (ISO 8601, UTC). The device renews it at "
                                       "two thirds of its lifetime.")


class EnrollAnswer(CertificateAnswer):
    tuf_root: str = Field(description="The vendor's first TUF root (`1.root.json` of the portal's TUF repository), "
                                      "as text: the device keeps it as its trust anchor for updates and follows "
                                      "the chain of newer roots from it (docs/protocol.md, Updates).")


class DeviceAnswer(BaseModel):
    device_id: str
    certificate_not_after: str


class ExportAnswer(BaseModel):
    """OTLP's Export*ServiceResponse: an empty partialSuccess means everything was accepted."""

    partialSuccess: dict[str, Any] = Field(default_factory=dict)  # noqa: N815 - OTLP's field name


class HeadsAnswer(BaseModel):
    heads: list[dict[str, Any]] = Field(description="The audit checkpoint records received from the calling "
                                                    "device, oldest first, each as its attributes.")


class InboxMessage(BaseModel):
    id: str
    type: str = Field(description=f"One of: {', '.join(MESSAGE_TYPES)}. A device ignores (and acknowledges) "
                                  "types it does not know.")
    body: dict[str, Any]
    created: float = Field(description="When the portal queued it, seconds since the epoch.")


class InboxAnswer(BaseModel):
    messages: list[InboxMessage]


class AckRequest(BaseModel):
    ids: list[str] = Field(max_length=1000)


class AckAnswer(BaseModel):
    acknowledged: int = Field(description="How many of the IDs were not acknowledged before.")


class RelayAnswer(BaseModel):
    host: str = Field(description="Where the screen relay listens: the portal's host (or, when the portal listens on "
                                  "every address, the host name the device called it by).")
    port: int = Field(description="The relay's TCP port: raw TLS with the device certificate, then one line "
                                  "(docs/protocol.md, Screen relay).")


# --- the application -------------------------------------------------------------------------------------------

def create_app(store: Store, pki: PortalPki, *, cert_days: int = DEVICE_CERT_DAYS,
               repository: updates.Repository | None = None, relay: Relay | None = None) -> FastAPI:
    """The portal; its TUF repository is `repository`, by default the one in the CA's data folder. `relay`, the
    screen relay, runs in the server's event loop from start-up to shutdown; without one, `GET /v1/relay` says
    that this portal relays no screens."""
    repository = repository or updates.Repository(pki.ca_file.parent)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        refresher = asyncio.create_task(updates.keep_fresh(repository))
        if relay is not None:
            await relay.start()
        try:
            yield
        finally:
            if relay is not None:
                await relay.close()
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher

    app = FastAPI(title="ServiceGate device protocol", version=API_VERSION, lifespan=lifespan,
                  description="What a ServiceGate device and the vendor's portal say to each other, over HTTPS with "
                              "mutual TLS. The calling device is the one named by its verified client certificate. "
                              "See docs/protocol.md.")
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    app.state.store = store
    app.state.updates = repository
    app.include_router(sessions.router)
    app.include_router(cases.router)
    app.include_router(uploads.router)
    app.include_router(updates.router)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        return JSONResponse({"detail": f"the request is not valid ({problems}); see docs/protocol.md"}, 400)


    @app.get("/v1/ca", tags=["enrollment"])
    def ca() -> CaAnswer:
        """The vendor CA, fetched before anything is trusted; the device checks its fingerprint."""
        return CaAnswer(ca=pki.ca_pem, sha256=pki.fingerprint)

    @app.post("/v1/enroll", tags=["enrollment"], responses={401: {"description": "one-time password refused"}})
    def enroll(body: EnrollRequest) -> EnrollAnswer:
        """Exchange a one-time password and a CSR for the device's client certificate, with the vendor's first TUF
        root. The request is checked first, so that a faulty one does not use up the password."""
        certificate = sign(body.device_id, body.csr, None)
        tuf_root = repository.first_root()
        try:
            store.redeem_otp(body.device_id, body.otp)
        except EnrollmentRefused as exc:
            log.warning("enrollment of %r refused: %s", body.device_id, exc)
            raise HTTPException(401, f"enrollment refused: {exc}") from None
        answer = issued(body.device_id, certificate, totp_secret=body.totp_secret)
        return EnrollAnswer(**answer.model_dump(), tuf_root=tuf_root)

    @app.post("/v1/renew", tags=["enrollment"])
    def renew(body: RenewRequest, request: Request, device_id: Caller) -> CertificateAnswer:
        """A new certificate for the calling device, for a new key from the same machine. The certificate that
        asked stays valid until the device is first seen with the new one."""
        device = store.device(device_id)
        assert device is not None
        return issued(device_id, sign(device_id, body.csr, device["binding"]), renewed_from=request.state.serial)

    def sign(device_id: str, csr: str, binding: str | None) -> x509.Certificate:
        try:
            return pki.sign_device(csr, device_id, days=cert_days, binding=binding)
        except CsrError as exc:
            store.log(device_id, "csr_refused", str(exc))
            raise HTTPException(400, f"certificate request refused: {exc}") from None

    def issued(device_id: str, certificate: x509.Certificate, *, renewed_from: int | None = None,
               totp_secret: str | None = None) -> CertificateAnswer:
        not_after = certificate.not_valid_after_utc
        store.enrolled(device_id, binding_of(certificate) or "", certificate.serial_number, not_after.timestamp(),
                       renewed_from=renewed_from, totp_secret=totp_secret)
        return CertificateAnswer(certificate=certificate.public_bytes(serialization.Encoding.PEM).decode(),
                                 ca=pki.ca_pem, not_after=not_after.isoformat())

    @app.get("/v1/device", tags=["device"])
    def device(device_id: Caller) -> DeviceAnswer:
        """Who the portal takes the caller for."""
        row = store.device(device_id)
        assert row is not None
        return DeviceAnswer(device_id=device_id, certificate_not_after=datetime.datetime.fromtimestamp(
            row["cert_not_after"], datetime.UTC).isoformat())

    otlp_body = {"requestBody": {"required": True, "description": "OTLP/HTTP JSON (gzip allowed): every data "
                                 "point and log record carries the attributes servicegate.sequence and "
                                 "servicegate.kind; a record is kept once per device and sequence.",
                                 "content": {"application/json": {"schema": {"type": "object"}}}}}

    @app.post("/v1/metrics", tags=["telemetry"], openapi_extra=otlp_body)
    async def metrics(request: Request, device_id: Caller) -> ExportAnswer:
        """OTLP ExportMetricsServiceRequest."""
        return await ingest(request, device_id, _metric_items)

    @app.post("/v1/logs", tags=["telemetry"], openapi_extra=otlp_body)
    async def logs(request: Request, device_id: Caller) -> ExportAnswer:
        """OTLP ExportLogsServiceRequest: log lines, alerts, shed reports (gaps), audit checkpoint heads,
        session events."""
        return await ingest(request, device_id, _log_items)

    async def ingest(request: Request, device_id: str,
                     items_of: Callable[[dict[str, Any]], list[Item]]) -> ExportAnswer:
        raw = await request.body()
        try:
            if request.headers.get("content-encoding") == "gzip":
                unzip = zlib.decompressobj(wbits=31)
                raw = unzip.decompress(raw, MAX_DOCUMENT_BYTES)
                if unzip.unconsumed_tail:
                    raise HTTPException(413, f"the document is larger than {MAX_DOCUMENT_BYTES} bytes unpacked; "
                                             "send smaller batches")
            document = json.loads(raw)
            items = items_of(document)
        except (zlib.error, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError,
                RecursionError) as exc:
            store.log(device_id, "telemetry_refused", f"{request.url.path}: {exc!r}")
            raise HTTPException(400, f"not a valid OTLP/JSON document for {request.url.path} ({exc!s:.200}); "
                                     "the batch is refused, see docs/protocol.md") from None
        await asyncio.to_thread(store.ingest, device_id, items)
        return ExportAnswer()

    @app.get("/v1/audit/heads", tags=["audit"])
    def heads(device_id: Caller) -> HeadsAnswer:
        """What `servicegate audit verify --against-portal` compares the local log with."""
        return HeadsAnswer(heads=store.audit_heads(device_id))

    @app.get("/v1/inbox", tags=["inbox"])
    async def inbox(request: Request, device_id: Caller,
                    wait: Annotated[float, Query(ge=0, le=MAX_INBOX_WAIT_S)] = 0) -> InboxAnswer:
        """The caller's unacknowledged messages; waits up to `wait` seconds for one when there are none."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            messages = await asyncio.to_thread(store.pending, device_id)
            if messages or loop.time() >= deadline or await request.is_disconnected():
                return InboxAnswer(messages=[InboxMessage(**m.to_dict()) for m in messages])
            await asyncio.sleep(min(INBOX_POLL_S, max(0.0, deadline - loop.time())))

    @app.post("/v1/inbox/ack", tags=["inbox"])
    def ack(body: AckRequest, device_id: Caller) -> AckAnswer:
        """Acknowledge messages once they are handled; they are not sent again."""
        return AckAnswer(acknowledged=store.acknowledge(device_id, body.ids))

    @app.get("/v1/relay", tags=["sessions"], responses={404: {"description": "this portal relays no screens"}})
    def relay_address(request: Request, device_id: Caller) -> RelayAnswer:
        """Where the device connects to share its screen in an active session (docs/protocol.md, Screen relay)."""
        if relay is None:
            raise HTTPException(404, "this portal relays no screens; ask the vendor for the screen relay")
        host = relay.host
        if host in ("", "0.0.0.0", "::"):  # listening everywhere: where the device reached the portal
            host = request.url.hostname or host
        return RelayAnswer(host=host, port=relay.port)

    return app


class BodyLimit:
    """Refuses a request body over `limit` bytes with 413, whether it declares its length or is chunked."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(send, self.limit)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _too_large(send, self.limit)


class _TooLarge(Exception):
    pass


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"the request body is larger than {limit} bytes; send smaller batches"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# --- OTLP/JSON documents -----------------------------------------------------------------------------------------

def _metric_items(document: dict[str, Any]) -> list[Item]:
    items = []
    for resource in document.get("resourceMetrics", []):
        for scope in resource.get("scopeMetrics", []):
            for metric in scope.get("metrics", []):
                for kind in ("gauge", "sum"):
                    for point in metric.get(kind, {}).get("dataPoints", []):
                        value = point.get("asDouble", point.get("asInt"))
                        content = {"name": metric["name"], "unit": metric.get("unit", ""), "value": value,
                                   "time": int(point.get("timeUnixNano", 0)), **_attributes(point)}
                        items.append(_item(content))
    return items


def _log_items(document: dict[str, Any]) -> list[Item]:
    items = []
    for resource in document.get("resourceLogs", []):
        for scope in resource.get("scopeLogs", []):
            for record in scope.get("logRecords", []):
                content = {"body": record.get("body", {}).get("stringValue", ""),
                           "severity": record.get("severityText", ""), "time": int(record.get("timeUnixNano", 0)),
                           **_attributes(record)}
                items.append(_item(content))
    return items


def _item(content: dict[str, Any]) -> Item:
    if "servicegate.sequence" not in content or "servicegate.kind" not in content:
        raise ValueError("a data point or log record without the attributes servicegate.sequence and "
                         "servicegate.kind")
    sequence = int(content["servicegate.sequence"])
    if not 0 < sequence < 2**63:
        raise ValueError(f"servicegate.sequence {sequence} is out of range")
    return Item(sequence, str(content["servicegate.kind"]), content)


def _attributes(holder: dict[str, Any]) -> dict[str, Any]:
    """OTLP attributes (key and AnyValue) as a plain mapping."""
    values: dict[str, Any] = {}
    for attribute in holder.get("attributes", []):
        value = attribute["value"]
        if "intValue" in value:
            values[attribute["key"]] = int(value["intValue"])
        else:
            values[attribute["key"]] = next(iter(value.values()), None)
    return values


def openapi_document() -> dict[str, Any]:
    """The protocol's OpenAPI document, from a portal in a throwaway folder."""
    with tempfile.TemporaryDirectory() as tmp:
        return create_app(Store(Path(tmp) / "portal.sqlite"), PortalPki(Path(tmp))).openapi()


if __name__ == "__main__":
    json.dump(openapi_document(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
