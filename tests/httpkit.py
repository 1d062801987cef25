"""Loopback HTTP servers for the fakes and probes of the tests: started on 127.0.0.1 (port 0: any free one)
in a daemon thread, and stopped, in one place."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def start_server(handler: type[BaseHTTPRequestHandler], port: int = 0) -> ThreadingHTTPServer:
    """A server on 127.0.0.1:``port``, answering in threads of its own; ``server_address[1]`` is its port."""
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True  # a request still being answered does not keep the test process alive
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def stop_server(server: ThreadingHTTPServer | None) -> None:
    """Stop serving and close the socket (None: nothing to stop)."""
    if server is not None:
        server.shutdown()
        server.server_close()
