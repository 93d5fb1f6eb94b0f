"""Test servers on a background thread that stop promptly.

``serve_forever`` checks for ``shutdown()`` once per poll interval (0.5 s by default), so every
fixture that stopped a server waited up to half a second in teardown; across the suite that was
seconds of idle time. Servers started here poll every 20 ms.
"""

from __future__ import annotations

import socketserver
import threading

POLL_INTERVAL_S = 0.02


def serve_in_thread(server: socketserver.BaseServer) -> threading.Thread:
    """Start ``server.serve_forever`` on a daemon thread and return the thread."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL_S}, daemon=True)
    thread.start()
    return thread
