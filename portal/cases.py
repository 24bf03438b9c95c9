"""Service cases: what a technologist asks for at the scanner's console (`servicegate request-service`).

The device sends the technologist's description (scrubbed of patient data on the device), how urgent it is, and a
technical report of the system; the portal opens a case and answers its number, which the console shows. The
engineer sees the cases (`servicegate-portal engineer cases`) and opens a session for one (`open-session
--case-id`), which the device then shows with the case number. A device sends a request again when the portal could
not be reached or the answer was lost, so the same request ID from the same device always gives the same case.

The rules for the description are those of the device (agent.protocol), written again here: the portal shares no
code with the agent.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import unicodedata
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, field_validator

from portal.auth import Caller
from portal.store import Store

router = APIRouter(tags=["service cases"])

URGENCIES = ("low", "normal", "high")
TEXT_MAX = 2000  # the device takes at most 500 characters as typed; scrubbing may make the text longer
REPORT_MAX_BYTES = 1024 * 1024


class ServiceRequest(BaseModel):
    request_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
                            description="The device's ID for the request: the same ID again gives the same case.")
    requested_at: str = Field(max_length=64, description="When the technologist asked (ISO 8601 with offset); a "
                                                         "request kept while the portal could not be reached arrives "
                                                         "later.")
    urgency: Literal["low", "normal", "high"] = Field(description="low: a question or a small problem, the scanner "
                                                                  "works as usual; normal: a problem that hampers "
                                                                  "work, the scanner can still be used; high: the "
                                                                  "scanner cannot be used.")
    text: str = Field(max_length=TEXT_MAX, description="The technologist's description, scrubbed of patient data on "
                                                       "the device: plain text on one line.")
    report: dict[str, Any] = Field(description="The technical system report (text lines under `system`, a telemetry "
                                               "sample under `metrics`); no patient data. At most 1 MiB as JSON.")

    @field_validator("text")
    @classmethod
    def _plain_text(cls, text: str) -> str:
        text = text.strip()
        if not text:
            raise ValueError("the description is empty: say what the problem is")
        if any(unicodedata.category(c) == "Cc" for c in text):
            raise ValueError("the description must be plain text on one line, without control characters")
        return text

    @field_validator("requested_at")
    @classmethod
    def _time(cls, text: str) -> str:
        try:
            when = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError("not an ISO 8601 time, like 2026-03-01T09:15:00Z") from None
        if when.tzinfo is None:
            raise ValueError("an ISO 8601 time with its offset, like 2026-03-01T09:15:00Z")
        return text

    @field_validator("report")
    @classmethod
    def _bounded(cls, report: dict[str, Any]) -> dict[str, Any]:
        try:
            size = len(json.dumps(report))
        except (TypeError, ValueError, RecursionError):
            raise ValueError("the report is not plain JSON") from None
        if size > REPORT_MAX_BYTES:
            raise ValueError(f"the report is {size} bytes as JSON; at most {REPORT_MAX_BYTES}")
        return report


class CaseAnswer(BaseModel):
    case_id: str = Field(description="The case number, like C-2026-000123: shown to the technologist, named by the "
                                     "engineer's sessions for the case.")
    request_id: str


@router.post("/v1/service-requests", responses={400: {"description": "the request is not valid (the detail says "
                                                                     "what is wrong)"}})
async def service_request(body: ServiceRequest, request: Request, device_id: Caller) -> CaseAnswer:
    """Open a service case for the calling device, or give the one its request ID opened before."""
    store: Store = request.app.state.store
    case_id = await asyncio.to_thread(store.open_case, device_id, body.request_id, urgency=body.urgency,
                                      text=body.text, report=body.report, requested_at=body.requested_at)
    return CaseAnswer(case_id=case_id, request_id=body.request_id)
