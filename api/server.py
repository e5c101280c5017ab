"""Serving the Flask app with waitress (a production WSGI server), stoppable from another thread."""
from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger(__name__)


class ApiServer:
    """A waitress server bound at construction (so the port is known), run until a stop event."""

    def __init__(self, wsgi_app: Any, host: str, port: int, threads: int = 8):
        from waitress import create_server

        # channel_timeout: idle keep-alive connections of load generators are closed after a while.
        # waitress buffers a whole body (spilling to disk) before Flask's MAX_CONTENT_LENGTH
        # is checked; cap it at the socket so a huge upload is refused while it arrives.
        max_body = getattr(wsgi_app, "config", {}).get("MAX_CONTENT_LENGTH") or 4 * 1024 * 1024
        self._server = create_server(wsgi_app, host=host, port=port, threads=threads, channel_timeout=60,
                                     ident="modelbus", max_request_body_size=max_body)
        self.host = host
        self.port = int(self._server.effective_port)

    @property
    def url(self) -> str:
        """http://host:port of the listening socket."""
        return f"http://{self.host}:{self.port}"

    def run(self, stop: threading.Event) -> None:
        """Serve until `stop` is set (a Services target)."""
        from waitress import wasyncore

        server = self._server

        def close_when_stopped() -> None:
            stop.wait()
            # Closing happens in the server's own loop thread: the trigger runs the thunk there;
            # with every dispatcher closed the loop's map is empty and run() returns.
            server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))

        watcher = threading.Thread(target=close_when_stopped, name="api-stop", daemon=True)
        watcher.start()
        log.info("api listening on %s", self.url)
        try:
            server.run()
        finally:
            server.task_dispatcher.shutdown(timeout=5)
            log.info("api stopped")
