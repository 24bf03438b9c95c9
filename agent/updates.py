"""Updates from the service centre (software, virus patterns, configuration): verified with TUF, staged, installed
only after an approval.

The device trusts nothing about an update but The Update Framework's signed metadata, checked by python-tuf's own
client (`tuf.ngclient.Updater`; no verification is written here). The vendor's TUF root comes with the enrollment
(`<state_dir>/portal/tuf-root.json`); python-tuf then follows the chain of newer roots, and keeps what it trusts in
`<state_dir>/updates/tuf/`. Metadata and targets come through the agent's own pinned mutual-TLS session
(`UpdateChannel`): python-tuf's default fetcher would use the system's trust store.

An offer (the portal's inbox message `update_offer`, which names a target and nothing else) is looked up in the
signed targets metadata, checked against this device (its model, the agent's version, and the version of that kind
installed here: versions only go up), downloaded into `<state_dir>/updates/staging/<offer id>/` with its signed
length and hashes checked, and then waits for the technologist's approval (`Offer`). What is refused is staged
nowhere, and the refusal is recorded with its reason.
"""

from __future__ import annotations

import logging
import re
import secrets
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import requests
from tuf.api import exceptions as tuf_errors
from tuf.api._payload import Root, TargetFile  # where tuf.api.metadata takes them from (it re-exports without __all__)
from tuf.api.metadata import Metadata
from tuf.ngclient.fetcher import FetcherInterface
from tuf.ngclient.updater import Updater

from agent.builtin_tasks import THRESHOLDS_FILE, UPGRADE_CANCEL
from agent.clock import Clock, parse_utc, utc_iso
from agent.config import UpdatesConfig
from agent.enroll import PORTAL_DIR, TUF_ROOT_FILE
from agent.errors import NotFoundError, RefusedError, ServiceGateError, UsageError
from agent.fsutil import read_json, write_json
from agent.protocol import SYSTEM_ACTOR
from agent.tasks import UPDATE_TASKS
from agent.versions import version_key

log = logging.getLogger("servicegate.updates")

KINDS = ("software", "virus-patterns", "configuration")
_VERSION = re.compile(r"\d+(\.\d+){0,3}")
FETCH_TIMEOUT_S = 60

# An offer's states: offered (waits for a decision) -> approved -> installing -> installed | failed; or postponed
# (offered again at its time), rejected. A software update goes from installing to upgrading (handed to the upgrade
# service, which restarts the agent) and is installed or failed by the service's result. A refused offer gets no
# record of its own beyond the audit log.
WAITING = ("offered", "postponed")
OPEN = ("offered", "postponed", "approved", "installing", "upgrading")
UPGRADE_RESULT = "upgrade-result.json"  # in the update folder: what the upgrade service (as root) answers


class UpdateRefused(RefusedError):
    """An update that must not be installed: tampered with, replayed, for another device, or older."""


@dataclass(frozen=True)
class UpdateInfo:
    """What the signed targets metadata says of one update (its `custom` fields, checked here)."""

    name: str
    kind: str
    version: str
    length: int
    sha256: str
    models: tuple[str, ...]
    software_versions: tuple[str, ...]  # the agent versions it applies to; empty: any
    restart: bool
    downtime: bool  # needs examination downtime
    notes: str
    publisher: str
    signed_by: tuple[str, ...]  # the key IDs of the targets role that signed it

    @classmethod
    def of(cls, name: str, target: TargetFile, signed_by: Sequence[str]) -> UpdateInfo:
        custom = target.custom
        kind, version = custom.get("kind"), custom.get("version")
        models, versions = custom.get("models"), custom.get("software_versions", [])
        if kind not in KINDS:
            raise UpdateRefused(f"{name}: the signed metadata gives no known kind ({kind!r}); this device installs "
                                f"{', '.join(KINDS)}")
        if not isinstance(version, str) or not _VERSION.fullmatch(version):
            raise UpdateRefused(f"{name}: the signed metadata gives no version of the form 1.2.3 ({version!r})")
        if not isinstance(models, list) or not models or not all(isinstance(m, str) for m in models):
            raise UpdateRefused(f"{name}: the signed metadata names no models it applies to")
        if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
            raise UpdateRefused(f"{name}: the signed metadata's software_versions is not a list of versions")
        return cls(name=name, kind=kind, version=version, length=target.length,
                   sha256=str(target.hashes.get("sha256", "")), models=tuple(models), software_versions=tuple(versions),
                   restart=custom.get("restart") is True, downtime=custom.get("downtime") is True,
                   notes=str(custom.get("notes", ""))[:4000], publisher=str(custom.get("publisher", ""))[:200],
                   signed_by=tuple(signed_by))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "version": self.version, "length": self.length,
                "sha256": self.sha256, "models": list(self.models), "software_versions": list(self.software_versions),
                "restart": self.restart, "downtime": self.downtime, "notes": self.notes, "publisher": self.publisher,
                "signed_by": list(self.signed_by)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UpdateInfo:
        return cls(name=data["name"], kind=data["kind"], version=data["version"], length=int(data["length"]),
                   sha256=data["sha256"], models=tuple(data["models"]),
                   software_versions=tuple(data["software_versions"]), restart=bool(data["restart"]),
                   downtime=bool(data["downtime"]), notes=data["notes"], publisher=data["publisher"],
                   signed_by=tuple(data["signed_by"]))


def check_applies(info: UpdateInfo, model: str, agent_version: str, installed: Mapping[str, str]) -> None:
    """Refuse an update meant for another model or software version, or not newer than what is installed."""
    if not model:
        raise UpdateRefused(f"{info.name}: this device's model is not configured ([updates] model in agent.toml), so "
                            "no update can be matched to it")
    if model not in info.models:
        raise UpdateRefused(f"{info.name} is for {', '.join(info.models)}, not for this {model}")
    if info.software_versions and agent_version not in info.software_versions:
        raise UpdateRefused(f"{info.name} applies to ServiceGate {', '.join(info.software_versions)}, not to the "
                            f"{agent_version} installed here")
    current = installed.get(info.kind)
    if current is not None and version_key(info.version) <= version_key(current):
        raise UpdateRefused(f"{info.name} is {info.kind} {info.version}, not newer than the {current} installed here: "
                            "versions only go up (an older one is never installed, even validly signed)")


class SessionFetcher(FetcherInterface):
    """python-tuf's downloads through the agent's pinned mutual-TLS session (never the system's trust store)."""

    def __init__(self, session: requests.Session, timeout_s: float = FETCH_TIMEOUT_S) -> None:
        self.session, self.timeout_s = session, timeout_s

    def _fetch(self, url: str) -> Iterator[bytes]:
        try:
            response = self.session.get(url, stream=True, timeout=self.timeout_s)
        except requests.Timeout as exc:
            raise tuf_errors.SlowRetrievalError(f"{url}: no answer within {self.timeout_s} s") from exc
        except requests.RequestException as exc:
            raise tuf_errors.DownloadError(f"{url}: {type(exc).__name__}") from exc
        if response.status_code != 200:  # python-tuf expects a 404 for the root version after the newest
            response.close()
            raise tuf_errors.DownloadHTTPError(f"HTTP {response.status_code} for {url}", response.status_code)
        return _chunks(response, url)


def _chunks(response: requests.Response, url: str) -> Iterator[bytes]:
    """The body, with a connection lost on the way reported as python-tuf's DownloadError."""
    try:
        yield from response.iter_content(chunk_size=65536)
    except requests.RequestException as exc:
        raise tuf_errors.DownloadError(f"{url}: {type(exc).__name__} while reading") from exc
    finally:
        response.close()


# What each of python-tuf's refusals means, in words for site IT and the audit log.
_REFUSALS: tuple[tuple[type[Exception], str], ...] = (
    (tuf_errors.ExpiredMetadataError, "the update metadata has expired (a replayed or frozen copy)"),
    (tuf_errors.BadVersionNumberError, "the update metadata is older than what this device has seen already (a "
                                       "rollback), or its versions do not fit together"),
    (tuf_errors.UnsignedMetadataError, "the update metadata is not signed by a key the vendor's root trusts"),
    (tuf_errors.LengthOrHashMismatchError, "the file does not match its signed length and hash (tampered with)"),
    (tuf_errors.DownloadLengthMismatchError, "the file is longer than its signed length"),
    (tuf_errors.RepositoryError, "the update metadata does not fit together"),
)


def refusal(exc: Exception) -> str:
    for kind, words in _REFUSALS:
        if isinstance(exc, kind):
            return f"{words}: {exc}"
    return str(exc)


class UpdateChannel:
    """The TUF client of this device: the vendor's repository at `<portal>/v1/tuf/`, through `session`."""

    def __init__(self, state_dir: Path, portal_url: str, session: requests.Session) -> None:
        self.metadata_dir = state_dir / "updates" / "tuf"
        self.root_file = state_dir / PORTAL_DIR / TUF_ROOT_FILE  # the vendor's first TUF root, from the enrollment
        self.base = portal_url.rstrip("/") + "/v1/tuf"
        self.fetcher = SessionFetcher(session)
        self._updater: Updater | None = None
        self._targets: dict[str, TargetFile] = {}

    def _new_updater(self) -> Updater:
        self.metadata_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        trusted = self.metadata_dir / "root.json"
        if not trusted.exists():
            try:
                bootstrap = self.root_file.read_bytes()
            except OSError:
                raise UpdateRefused("this device has no TUF root from its enrollment, so it cannot check any update: "
                                    "enroll it again (`servicegate enroll`) at a portal that serves updates") from None
        return Updater(metadata_dir=str(self.metadata_dir), metadata_base_url=f"{self.base}/metadata/",
                       target_base_url=f"{self.base}/targets/", fetcher=self.fetcher,
                       bootstrap=None if trusted.exists() else bootstrap)

    def lookup(self, name: str) -> UpdateInfo:
        """Refresh the metadata (root, timestamp, snapshot, targets, in that order) and find `name` in it."""
        try:
            updater = self._new_updater()  # a fresh client for each offer: it refreshes once, from the top
            updater.refresh()
            target = updater.get_targetinfo(name)
        except tuf_errors.DownloadError as exc:
            raise RefusedError(f"the update metadata cannot be fetched now ({exc}); it is tried again later") from None
        except (tuf_errors.RepositoryError, ValueError) as exc:
            raise UpdateRefused(refusal(exc)) from None
        if target is None:
            raise UpdateRefused(f"{name!r} is not in the signed targets metadata: a file offered outside TUF is never "
                                "installed")
        self._updater, self._targets[name] = updater, target
        root = Metadata[Root].from_file(str(self.metadata_dir / "root.json"))  # the newest root, as python-tuf kept it
        return UpdateInfo.of(name, target, sorted(root.signed.roles["targets"].keyids))

    def download(self, name: str, into: Path) -> Path:
        """The target, checked against its signed length and hashes, as `into/<file name>`."""
        if self._updater is None or name not in self._targets:
            raise RuntimeError("lookup() the target first")  # a programming error
        into.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = into / Path(name).name
        try:
            self._updater.download_target(self._targets[name], str(path))
        except tuf_errors.DownloadError as exc:
            shutil.rmtree(into, ignore_errors=True)
            if isinstance(exc, tuf_errors.DownloadLengthMismatchError):
                raise UpdateRefused(refusal(exc)) from None
            raise RefusedError(f"the update cannot be downloaded now ({exc}); it is tried again later") from None
        except (tuf_errors.RepositoryError, OSError) as exc:
            shutil.rmtree(into, ignore_errors=True)
            raise UpdateRefused(refusal(exc)) from None
        return path


@dataclass(frozen=True)
class Offer:
    id: str
    info: UpdateInfo
    state: str
    offered_at: datetime
    file: str = ""  # the staged file
    decided_by: str = ""
    decided_at: datetime | None = None
    until: datetime | None = None  # postponed until
    why: str = ""  # a rejection's reason, an installation's failure
    task_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **self.info.to_dict(), "state": self.state, "offered_at": utc_iso(self.offered_at),
                "file": self.file, "decided_by": self.decided_by,
                "decided_at": utc_iso(self.decided_at) if self.decided_at else None,
                "until": utc_iso(self.until) if self.until else None, "why": self.why, "task_id": self.task_id}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Offer:
        return cls(id=data["id"], info=UpdateInfo.from_dict(data), state=data["state"],
                   offered_at=parse_utc(data["offered_at"]), file=data.get("file", ""),
                   decided_by=data.get("decided_by", ""),
                   decided_at=parse_utc(data["decided_at"]) if data.get("decided_at") else None,
                   until=parse_utc(data["until"]) if data.get("until") else None, why=data.get("why", ""),
                   task_id=data.get("task_id", ""))

    def decided(self, state: str, by: str, at: datetime, **more: Any) -> Offer:
        return replace(self, state=state, decided_by=by, decided_at=at, **more)


def configuration_dir(state_dir: Path) -> Path:
    """Where configuration updates are installed: `<version>/thresholds.toml`, and `current` pointing at one."""
    return state_dir / "updates" / "configuration"


def vendor_thresholds(state_dir: Path) -> Path | None:
    """The threshold rules the vendor's last configuration update installed, if any."""
    path = configuration_dir(state_dir) / "current" / THRESHOLDS_FILE
    return path if path.is_file() else None


class OfferStore:
    """`<state_dir>/updates/`: the offers (offers.json), the versions installed per kind (installed.json), the names
    waiting to be fetched (pending.json), the staged files (staging/<offer id>/) and the vendor's configuration
    (configuration/)."""

    def __init__(self, state_dir: Path) -> None:
        self.folder = state_dir / "updates"
        self.staging = self.folder / "staging"
        self.configuration = configuration_dir(state_dir)

    def load(self) -> dict[str, Offer]:
        data = read_json(self.folder / "offers.json") if (self.folder / "offers.json").exists() else []
        return {o["id"]: Offer.from_dict(o) for o in data}

    def save(self, offers: Mapping[str, Offer]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_json(self.folder / "offers.json", [o.to_dict() for o in offers.values()])

    def installed(self) -> dict[str, str]:
        path = self.folder / "installed.json"
        return dict(read_json(path)) if path.exists() else {}

    def set_installed(self, kind: str, version: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_json(self.folder / "installed.json", {**self.installed(), kind: version})

    def pending(self) -> list[str]:
        path = self.folder / "pending.json"
        return list(read_json(path)) if path.exists() else []

    def set_pending(self, names: Sequence[str]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_json(self.folder / "pending.json", list(names))

    def reports(self) -> list[dict[str, Any]]:
        path = self.folder / "reports.json"
        return list(read_json(path)) if path.exists() else []

    def set_reports(self, reports: Sequence[Mapping[str, Any]]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_json(self.folder / "reports.json", [dict(r) for r in reports])


@dataclass(frozen=True)
class Hooks:
    """What the update flow needs of the agent core (agent.core.Agent gives its own methods)."""

    audit_first: Callable[[str, str, dict[str, Any]], None]  # recorded before the change, or the change is refused
    audit_after: Callable[[str, str, dict[str, Any]], None]
    publish: Callable[[str, dict[str, Any]], None]
    start_task: Callable[[str, dict[str, str], str], str]  # task kind, params, actor -> the task's ID
    in_core: Callable[[Callable[[], Any]], Any]  # a change, run where the agent's state lives
    wake_sender: Callable[[], None]


class UpdateFlow:
    """The offers of one device, from the portal's offer to the installation's report. Every method but
    `fetch_pending` and `send_reports` runs where the agent's state lives; those two run in the daemon's sending
    thread and do their network work there."""

    def __init__(self, state_dir: Path, config: UpdatesConfig, clock: Clock, hooks: Hooks, agent_version: str,
                 kept_by_site: Mapping[str, str] | None = None) -> None:
        self.store = OfferStore(state_dir)
        self.config, self.clock, self.hooks, self.agent_version = config, clock, hooks, agent_version
        # Kinds of update the site manages itself (kind -> why), refused when offered: the update would change
        # nothing.
        self.kept_by_site = dict(kept_by_site or {})
        self.offers = self.store.load()
        # Set by the daemon from the portal link: a new TUF client over the pinned session, and the report's sender.
        self.channel: Callable[[], UpdateChannel] | None = None
        self.send_report: Callable[[dict[str, Any]], None] | None = None

    # ---- the portal's side ----------------------------------------------------------------------------------------

    def offer(self, name: str, actor: str) -> dict[str, Any]:
        """The portal offers an update by its target's name: kept to be looked up, checked and fetched."""
        if not name or len(name) > 200 or any(ord(c) < 32 for c in name):
            raise UsageError(f"'target' must name an update (at most 200 characters), not {name[:60]!r}")
        pending = self.store.pending()
        known = any(o.info.name == name and o.state in OPEN for o in self.offers.values())
        if name not in pending and not known:
            self.store.set_pending([*pending, name])
        self.hooks.audit_after("update_offer_received", actor, {"target": name})
        self.hooks.wake_sender()
        return {"target": name, "state": "known" if known else "pending"}

    def fetch_pending(self) -> bool:
        """Each pending offer looked up in the signed metadata, checked, downloaded and staged, or refused (in the
        sending thread). False when the portal cannot be reached now: those stay pending."""
        if self.channel is None:
            return True
        reached = True
        for name in self.hooks.in_core(self.store.pending):
            offer_id = f"u{self.clock.now():%Y%m%d%H%M%S}-{secrets.token_hex(3)}"
            try:
                channel = self.channel()
                info = channel.lookup(name)
                self.hooks.in_core(partial(check_applies, info, self.config.model, self.agent_version,
                                           self.installed()))
                if info.kind in self.kept_by_site:
                    raise UpdateRefused(f"{info.name}: {self.kept_by_site[info.kind]}")
                path = channel.download(name, self.store.staging / offer_id)
            except UpdateRefused as exc:
                self.hooks.in_core(partial(self._refused, name, str(exc)))
                continue
            except RefusedError as exc:  # the portal cannot be reached now: tried again later
                log.warning("update %s: %s", name, exc)
                reached = False
                continue
            self.hooks.in_core(partial(self._staged, offer_id, info, path))
        return reached

    def installed(self) -> dict[str, str]:
        """The version of each kind installed here (the software's is the running agent's)."""
        return {**self.store.installed(), "software": self.agent_version}

    def _refused(self, name: str, why: str) -> None:
        self.store.set_pending([n for n in self.store.pending() if n != name])
        self.hooks.audit_after("update_refused", SYSTEM_ACTOR, {"target": name, "why": why})
        self._report(name, "", "refused", why)

    def _staged(self, offer_id: str, info: UpdateInfo, path: Path) -> None:
        offer = Offer(offer_id, info, "offered", self.clock.now(), file=str(path))
        self.store.set_pending([n for n in self.store.pending() if n != info.name])
        self._save(offer)
        self.hooks.audit_after("update_offered", SYSTEM_ACTOR, {"update_id": offer_id, **_audited(info)})
        if info.kind == "virus-patterns" and in_window(self.config.auto_approve_virus_patterns, self.clock.now()):
            self.approve(offer_id, POLICY_ACTOR)

    # ---- the console's side ---------------------------------------------------------------------------------------

    def list(self) -> list[dict[str, Any]]:
        return [o.to_dict() for o in sorted(self.offers.values(), key=lambda o: o.offered_at)]

    def get(self, offer_id: str) -> Offer:
        try:
            return self.offers[offer_id]
        except KeyError:
            raise NotFoundError(f"no update with ID {offer_id!r} (`servicegate update list` shows them)") from None

    def approve(self, offer_id: str, actor: str) -> Offer:
        """Install a waiting update: the approval is recorded first, then the catalog's task installs it."""
        offer = self._waiting(offer_id)
        current = self.installed().get(offer.info.kind)  # another one may have been installed since it was offered
        if current is not None and version_key(offer.info.version) <= version_key(current):
            raise RefusedError(f"{offer.info.kind} {current} is installed since this update was offered; "
                               f"{offer.info.version} is not newer: reject it")
        task_kind = UPDATE_TASKS.get(offer.info.kind)
        if task_kind is None:
            raise RefusedError(f"this device cannot install {offer.info.kind} updates yet; reject it, and tell the "
                               "vendor")
        self.hooks.audit_first("update_approved", actor, {"update_id": offer.id, **_audited(offer.info),
                                                          "by": "site policy" if actor == POLICY_ACTOR else actor})
        approved = offer.decided("approved", actor, self.clock.now())
        self._save(approved)
        params = {"file": offer.file, "version": offer.info.version, "sha256": offer.info.sha256}
        try:
            task_id = self.hooks.start_task(task_kind, params, actor)
        except ServiceGateError as exc:
            return self._ended(approved, "failed", f"the installation could not start: {exc}")
        return self._save(replace(approved, state="installing", task_id=task_id))

    def reject(self, offer_id: str, actor: str, reason: str) -> Offer:
        offer = self._waiting(offer_id)
        self.hooks.audit_after("update_rejected", actor, {"update_id": offer.id, **_audited(offer.info),
                                                          "reason": reason})
        shutil.rmtree(self.store.staging / offer.id, ignore_errors=True)
        self._report(offer.info.name, offer.info.version, "rejected", reason)
        return self._save(offer.decided("rejected", actor, self.clock.now(), why=reason))

    def postpone(self, offer_id: str, actor: str, until: datetime) -> Offer:
        offer = self._waiting(offer_id)
        now = self.clock.now()
        if not now < until <= now + MAX_POSTPONE:
            raise UsageError(f"postpone until a time in the next {MAX_POSTPONE.days} days, not {utc_iso(until)}")
        self.hooks.audit_after("update_postponed", actor, {"update_id": offer.id, **_audited(offer.info),
                                                           "until": utc_iso(until)})
        self._report(offer.info.name, offer.info.version, "postponed", f"until {utc_iso(until)}")
        return self._save(offer.decided("postponed", actor, now, until=until))

    def tick(self) -> None:
        """A postponed update whose time came is asked for again; the upgrade service's result is taken."""
        self.settle_upgrade()
        now = self.clock.now()
        for offer in list(self.offers.values()):
            if offer.state == "postponed" and offer.until is not None and offer.until <= now:
                self._save(replace(offer, state="offered", until=None))

    def waiting(self) -> bool:
        return any(o.state in ("postponed", "upgrading") for o in self.offers.values())

    def task_ended(self, task_id: str, state: str, detail: str) -> None:
        """The install task of an update ended: installed, or failed (its own check rolled it back)."""
        offer = next((o for o in self.offers.values() if o.task_id == task_id and o.state == "installing"), None)
        if offer is None:
            return
        if state == "completed" and offer.info.kind == "software":
            self._save(replace(offer, state="upgrading", why=detail))
            self.hooks.audit_after("update_handed_over", SYSTEM_ACTOR, {"update_id": offer.id, **_audited(offer.info),
                                                                        "detail": detail})
        elif state == "completed":
            self.store.set_installed(offer.info.kind, offer.info.version)
            self._ended(offer, "installed", detail)
        else:
            self._ended(offer, "failed", detail or state)

    def cancel_upgrades(self, actor: str) -> tuple[str, ...]:
        """The kill switch: a software update handed to the upgrade service is stopped before it switches
        (`upgrade-cancel.json`, which the service checks before it starts and again just before the switch; after
        the switch it is too late, and the new version runs). Its result then says what happened. The IDs."""
        upgrading = [o for o in self.offers.values() if o.state == "upgrading"]
        for offer in upgrading:
            write_json(self.store.folder / UPGRADE_CANCEL, {"version": offer.info.version, "by": actor,
                                                             "at": utc_iso(self.clock.now())})
            self.hooks.audit_after("update_cancel_requested", actor, {"update_id": offer.id, **_audited(offer.info)})
        return tuple(o.id for o in upgrading)

    def settle_upgrade(self) -> None:
        """The upgrade service's result for a software update handed to it: installed, or failed (rolled back)."""
        path = self.store.folder / UPGRADE_RESULT
        if not path.exists():
            return
        try:
            result = dict(read_json(path))
            version, outcome, detail = str(result["version"]), str(result["outcome"]), str(result.get("detail", ""))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("%s is unreadable (%s); it is left for site IT", path, exc)
            return
        offer = next((o for o in self.offers.values() if o.info.kind == "software" and o.info.version == version
                      and o.state == "upgrading"), None)
        if offer is not None:
            self._ended(offer, "installed" if outcome == "installed" else "failed", detail)
        path.unlink(missing_ok=True)

    def _ended(self, offer: Offer, state: str, detail: str) -> Offer:
        self.hooks.audit_after(f"update_{state}", SYSTEM_ACTOR, {"update_id": offer.id, **_audited(offer.info),
                                                                 "detail": detail})
        shutil.rmtree(self.store.staging / offer.id, ignore_errors=True)
        self._report(offer.info.name, offer.info.version, state, detail)
        return self._save(replace(offer, state=state, why="" if state == "installed" else detail))

    def _waiting(self, offer_id: str) -> Offer:
        offer = self.get(offer_id)
        if offer.state not in WAITING:
            raise RefusedError(f"update {offer_id} is {offer.state}: only a waiting update can be approved, rejected "
                               "or postponed")
        return offer

    def _save(self, offer: Offer) -> Offer:
        self.offers[offer.id] = offer
        self.store.save(self.offers)
        self.hooks.publish("update_changed", offer.to_dict())
        return offer

    # ---- reports to the portal ------------------------------------------------------------------------------------

    def _report(self, name: str, version: str, outcome: str, detail: str) -> None:
        """Kept durably until the sending thread got it to the portal."""
        reports = self.store.reports()
        self.store.set_reports([*reports, {"target": name, "version": version, "outcome": outcome,
                                           "detail": detail[:1000], "at": utc_iso(self.clock.now())}])
        self.hooks.wake_sender()

    def send_reports(self) -> bool:
        """Send the kept reports, oldest first (in the sending thread). False when the portal cannot be reached."""
        if self.send_report is None:
            return True
        for report in self.hooks.in_core(self.store.reports):
            try:
                self.send_report(report)
            except ServiceGateError as exc:
                log.warning("update report: %s; tried again later", exc)
                return False
            self.hooks.in_core(partial(self._sent, report))
        return True


    def _sent(self, report: Mapping[str, Any]) -> None:
        self.store.set_reports([r for r in self.store.reports() if r != report])


POLICY_ACTOR = "site-policy"  # the actor of an approval the site's policy gave ([updates] auto_approve_virus_patterns)
MAX_POSTPONE = timedelta(days=30)


def in_window(window: str, now: datetime) -> bool:
    """Whether local `now` falls in a daily window like "22:00-06:00" (which may wrap past midnight)."""
    if not window:
        return False
    start, end = (time.fromisoformat(part) for part in window.split("-"))
    local = now.astimezone().time()
    return start <= local < end if start <= end else local >= start or local < end


def _audited(info: UpdateInfo) -> dict[str, Any]:
    """What the audit log keeps of an update: what, which version, from whom, signed by which key."""
    return {"target": info.name, "kind": info.kind, "version": info.version, "sha256": info.sha256,
            "publisher": info.publisher, "signed_by": list(info.signed_by)}
