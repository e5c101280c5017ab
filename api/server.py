"""Serving the Flask app with waitress (a production WSGI server), stoppable from another thread."""
from __future__ import annotations

import logging
import threading
from typing import Any

from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import ErrorTask

from modelbus.api.errors import error_body, http_error_code
from modelbus.messages.jsonutil import compact_json

log = logging.getLogger(__name__)


class JsonErrorTask(ErrorTask):
    """waitress's own error responses (malformed request, headers or body too large) as the API's JSON body.

    waitress answers these before the app sees the request, with a text/plain body of its own.
    """

    def execute(self) -> None:
        """Write the error as {"error": {"code", "message"}} and close the connection after it."""
        error = self.request.error
        adj = self.channel.server.adj
        if error.code == 413:
            # max_request_body_size is the app's limit + 1 (waitress refuses sizes >= it).
            message = f"request body is larger than {adj.max_request_body_size - 1} bytes"
        elif error.code == 431:
            message = f"request headers are larger than {adj.max_request_header_size} bytes"
        elif error.code == 400:
            message = f"malformed HTTP request: {error.body}"
        elif error.code == 500:
            # waitress puts a traceback here when expose_tracebacks is on; it stays in the log.
            message = "internal error; the server log has the details"
        else:
            message = f"{error.reason.lower()}: {error.body}"
        body = compact_json(error_body(http_error_code(error.code, error.reason), message)).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class JsonErrorChannel(HTTPChannel):
    """A waitress channel whose error responses are JSON (set on our server only, not globally)."""

    error_task_class = JsonErrorTask


class ApiServer:
    """A waitress server bound at construction (so the port is known), run until a stop event."""

    def __init__(self, wsgi_app: Any, host: str, port: int, threads: int = 8):
        from waitress import create_server

        # channel_timeout: idle keep-alive connections of load generators are closed after a while.
        # waitress buffers a whole body (spilling to disk) before Flask's MAX_CONTENT_LENGTH
        # is checked; cap it at the socket so a huge upload is refused while it arrives.
        # waitress refuses a body of max_request_body_size bytes or more; Flask one above its limit.
        max_body = getattr(wsgi_app, "config", {}).get("MAX_CONTENT_LENGTH") or 4 * 1024 * 1024
        self._server = create_server(wsgi_app, host=host, port=port, threads=threads, channel_timeout=60,
                                     ident="modelbus", max_request_body_size=max_body + 1)
        for dispatcher in list(self._server._map.values()):
            if isinstance(dispatcher, BaseWSGIServer):
                # An attribute of this server's listener, so other waitress servers in the
                # process keep their own channels.
                dispatcher.channel_class = JsonErrorChannel
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
            try:
                server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
            except OSError:
                pass  # the loop ended on its own and closed its trigger: nothing left to close

        watcher = threading.Thread(target=close_when_stopped, name="api-stop", daemon=True)
        watcher.start()
        log.info("api listening on %s", self.url)
        try:
            server.run()
        finally:
            server.task_dispatcher.shutdown(timeout=5)
            log.info("api stopped")
