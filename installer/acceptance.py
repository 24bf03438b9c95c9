"""`servicegate-install acceptance --portal URL`: the part of `make demo`'s story that needs no technologist and no
engineer, run by site IT against the real installation once it is installed and enrolled.

First everything `doctor` checks; then, with the running agent:

1. the scanner is enrolled with the portal site IT names (not a test or another vendor's portal), and connected;
2. telemetry reaches it: a successful push since the check began, or within the push interval before it
   (waiting up to `--wait` seconds for the next);
3. the audit log agrees with the checkpoint heads the portal holds (`servicegate audit verify --against-portal`);
4. the kill switch works on this installation: pressed (`servicegate kill`) only when it changes nothing, i.e. no
   session open, no task running and access already No access; then the examination block must be released.
   Otherwise it is not tried, and the line says why.

Each line is OK, FIX (with what to do) or SKIP (with why); exit code 0 when none says FIX. Like `doctor`, it asks the
installed agent through its command line and imports nothing of it but the configuration loader.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from installer import doctor, service
from installer.doctor import Finding
from installer.layout import UPGRADE_REQUEST, Layout, site_config

KILL_REASON = "acceptance check by site IT (servicegate-install acceptance)"


def examine(layout: Layout, portal_url: str, wait_s: float, *, now: Callable[[], float] = time.time,
            sleep: Callable[[float], None] = time.sleep) -> list[Finding]:
    """`doctor`'s findings, then the acceptance checks (which need an answering agent)."""
    found = doctor.examine(layout)
    state = service.status(layout)
    if state is None:
        return [*found, Finding("acceptance", False, "no agent answers: fix the lines above, then run this again.")]
    found.append(_portal(state, portal_url))
    found.append(_telemetry(layout, state, wait_s, now, sleep))
    found.append(doctor.audit_check(layout, against_portal=True))
    found.append(_kill_switch(layout))
    return found


def _portal(state: dict[str, Any], portal_url: str) -> Finding:
    portal = state.get("portal", {})
    enrolled = str(portal.get("portal_url") or "")
    if not enrolled:
        return Finding("enrolled with this portal", False, "not enrolled: `servicegate enroll --portal "
                                                           f"{portal_url} ...` with the values of the vendor's letter.")
    if enrolled.rstrip("/") != portal_url.rstrip("/"):
        return Finding("enrolled with this portal", False,
                       f"enrolled with {enrolled}, not {portal_url}: if {portal_url} is right, enroll again "
                       "(`servicegate enroll`); if not, run this with the address from the vendor's letter.")
    if portal.get("state") != "connected":
        return Finding("enrolled with this portal", False,
                       f"enrolled, but {portal.get('state')}: {portal.get('error') or 'no answer yet'}; see the "
                       "\"portal reachable\" line above.")
    return Finding("enrolled with this portal", True, f"{enrolled} as {portal.get('device_id')}, connected")


def _telemetry(layout: Layout, state: dict[str, Any], wait_s: float, now: Callable[[], float],
               sleep: Callable[[float], None]) -> Finding:
    """A push that reached the portal: since the check began or within one push interval before; else wait."""
    push_s = float(site_config(layout).telemetry.push_s)  # a broken file: doctor's "configuration valid" says so
    began = now()
    deadline = began + wait_s
    while True:
        outbox = _outbox(layout)
        last = outbox.get("last_push")
        if isinstance(last, int | float) and last >= began - push_s:
            when = datetime.fromtimestamp(last, UTC)
            return Finding("telemetry reaches the portal", True,
                           f"last push {when:%Y-%m-%d %H:%M:%S} UTC, {outbox.get('records', 0)} records waiting")
        if now() >= deadline:
            error = outbox.get("last_error") or (state.get("portal", {}).get("error")) or "none said"
            return Finding("telemetry reaches the portal", False,
                           f"no push in the last {push_s + wait_s:.0f} s (last error: {error}): check the portal "
                           "lines above and [telemetry] endpoint; `servicegate telemetry status` shows what waits.")
        sleep(min(5.0, max(0.0, deadline - now())))


def _outbox(layout: Layout) -> dict[str, Any]:
    code, answer, _output = service.ask_json(layout, "telemetry", "status", "--json")
    return answer if code == 0 else {}


def _kill_switch(layout: Layout) -> Finding:
    """Pressed only when it changes nothing: no open session, no running task, no upgrade on its way, access already
    No access; asked just before pressing (the checks before it take up to --wait seconds)."""
    state = service.status(layout) or {}
    level = state.get("access", {}).get("level")
    busy = [f"{len(state['sessions'])} session(s) open"] if state.get("sessions") else []
    busy += [f"{len(state['tasks'])} task(s) running"] if state.get("tasks") else []
    busy += ["a software upgrade is on its way"] if state.get("upgrade") or \
        (layout.update_dir / UPGRADE_REQUEST).exists() else []
    busy += ["the kill switch is at work"] if state.get("killing") else []
    busy += [f"access is {level}"] if level != "no-access" else []
    if busy:
        return Finding("kill switch", True, f"not tried: {', '.join(busy)}, which it would end; run this again "
                                            "when the scanner is idle with No access.", skipped=True)
    code, receipt, output = service.ask_json(layout, "kill", "--json", "--reason", KILL_REASON)
    receipt = receipt if code == 0 else {}
    after = service.status(layout) or {}
    held = bool(after.get("examination_block", {}).get("held"))
    problems = list(receipt.get("problems", []))
    if not receipt or problems or held:
        why = "; ".join(problems) or ("the examination block is still held" if held else output.strip()[-400:])
        return Finding("kill switch", False, f"{why}: look at `journalctl -u servicegate` and tell the vendor.")
    return Finding("kill switch", True, f"pressed: nothing to stop, the examination block released, "
                                        f"{receipt.get('elapsed_ms', '?')} ms (audited as {KILL_REASON!r})")
