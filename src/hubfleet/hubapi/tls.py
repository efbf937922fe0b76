"""One TLS context per process for the httpx clients hubfleet makes.

httpx builds a new ``ssl.SSLContext`` for every client (``httpx.get`` is a client too) and loads the whole CA
bundle into it: about 50 ms of CPU each on the 2-core reference machine, more than the request itself when the
other end is a hub on the loopback. A poll every 0.1-0.3 s that built a client per try spent a third of a core on
it, in hub starts, wakes and scrapes (and the tests that watch them). The context is built as httpx's default
(``httpx.create_ssl_context()``: certifi's bundle, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``), so HTTPS peers are
verified exactly as before; an ``SSLContext`` may be shared by clients and threads.
ref: https://www.python-httpx.org/advanced/ssl/
"""

from __future__ import annotations

import functools
import ssl

import httpx

__all__ = ["tls_context"]


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default verifying context, built once: pass it as ``verify=`` to every client."""
    return httpx.create_ssl_context()
