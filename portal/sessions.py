"""Remote sessions the engineer opens at the portal and the technologist claims at the console by their ID.

The engineer runs `servicegate-portal engineer open-session` and reads the 8-digit ID out over the phone; the
technologist types it in (`servicegate session claim`), and the device asks here for the session's details:
who, which company, why, which level and kind. Everything after that (the technologist's confirmation, the
engineer's one-time password, the end) happens on the device, which reports it back as session events
(docs/protocol.md). Wrong IDs count against the device: after `CLAIM_MAX_FAILURES` within `CLAIM_WINDOW_S` it
must wait (429), so an ID cannot be guessed at the console.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from portal.auth import Caller
from portal.store import ClaimRefused, Store

router = APIRouter(tags=["sessions"])


class ClaimRequest(BaseModel):
    session_id: str = Field(pattern=r"^[0-9]{8}$", description="The 8-digit session ID the technologist typed in.")


class ClaimAnswer(BaseModel):
    session_id: str
    engineer_id: str = Field(description="The engineer's unique ID; every audit record of the session names it.")
    name: str = Field(description="The engineer's full name.")
    company: str
    reason: str = Field(description="Why the session is needed, in the engineer's words.")
    level: str = Field(description="The level asked for: limited | full.")
    kind: str = Field(description="service | application-support")
    case_id: str = Field(description="The service case the session belongs to, or empty.")


@router.post("/v1/sessions/claim", responses={404: {"description": "no such session waiting for this device"},
                                              429: {"description": "too many wrong session IDs; wait"}})
async def claim(body: ClaimRequest, request: Request, device_id: Caller) -> ClaimAnswer:
    """Claim the session with this ID for the calling device: its details, once."""
    store: Store = request.app.state.store
    try:
        return ClaimAnswer(**await asyncio.to_thread(store.claim, device_id, body.session_id))
    except ClaimRefused as exc:
        raise HTTPException(429 if exc.limited else 404, str(exc)) from None
