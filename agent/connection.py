"""The one way the device talks HTTP to the portal: a `requests.Session` pinned to the vendor CA.

`verify` is the vendor CA's file and nothing else, and `trust_env` is off: the system trust store,
`REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE`, `SSL_CERT_FILE`, `HTTPS_PROXY`, `NO_PROXY` and `.netrc` never apply. A site
proxy is used only when it is configured (`[portal] proxy_url`); TLS then runs end to end through it (CONNECT), so
the proxy sees neither the content nor the certificates.
"""

from __future__ import annotations

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
    return session
