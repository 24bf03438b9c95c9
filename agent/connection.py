"""The one way the device talks HTTP to the portal: a `requests.Session` pinned to the vendor CA.

`verify` is the vendor CA's file and nothing else, and `trust_env` is off: the system trust store,
`REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE`, `SSL_CERT_FILE`, `HTTPS_PROXY`, `NO_PROXY` and `.netrc` never apply. A site
proxy is used only when it is configured (`[portal] proxy_url`); TLS then runs end to end through it (CONNECT), so
the proxy sees neither the content nor the certificates.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import requests


def pinned_session(ca_file: Path, *, client_cert: tuple[Path, Path] | None = None,
                   proxy_url: str = "") -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(ca_file)
    if client_cert is not None:
        session.cert = (str(client_cert[0]), str(client_cert[1]))
    session.proxies = {"https": proxy_url, "http": proxy_url} if proxy_url else {}
    session.max_redirects = 0  # the portal never redirects; following one could leave the pinned address
    return session


def tls_reason(exc: BaseException) -> str:
    """Why a TLS connection failed, in OpenSSL's words ("certificate has expired", "IP address mismatch",
    "unable to get local issuer certificate"), found in the chain of exceptions requests and urllib3 wrap it in."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {current.verify_message}"
        todo += [c for c in (current.__cause__, current.__context__, *current.args) if isinstance(c, BaseException)]
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
    return short(exc)


def short(value: object, limit: int = 200) -> str:
    """An exception or a peer's text on one line, cut to `limit` characters for a message."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[:limit] + "..."
