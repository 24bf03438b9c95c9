"""A uvicorn HTTP protocol that hands the verified TLS client certificate to the application.

uvicorn checks client certificates (`ssl_ca_certs`, `ssl_cert_reqs`) but does not pass them on (uvicorn issue
#745; pull requests #1119 and #3043 are unmerged), and hypercorn and granian do not either. The ASGI TLS
extension (https://asgi.readthedocs.io/en/latest/specs/tls.html) says where the certificate belongs:
`scope["extensions"]["tls"]["client_cert_chain"]`, PEM. This subclass of uvicorn's h11 protocol reads the peer
certificate from the connection's SSL object once, when the connection is made, and puts it there for every
request on that connection. The SSL layer verified it against the vendor CA during the handshake; a connection
without one carries an empty chain, and the application decides (portal.app requires one except for
enrollment).

Only the leaf certificate is available (`SSLObject.getpeercert(binary_form=True)`; the verified chain needs
Python 3.13). The extension is set by the server on every request, so nothing a client sends can put a
certificate there. Use it as `uvicorn.Config(..., http=TLSH11Protocol)`.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


class TLSH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return
        der = ssl_object.getpeercert(binary_form=True)
        tls = {"server_cert": None, "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
               "client_cert_name": None, "client_cert_error": None,
               "tls_version": None, "cipher_suite": None}
        inner = self.app

        async def app(scope: Any, receive: Any, send: Any) -> None:
            scope.setdefault("extensions", {})["tls"] = dict(tls)
            await inner(scope, receive, send)

        self.app = app
