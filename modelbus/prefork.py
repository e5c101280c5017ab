"""`modelbus api --workers N`: the API served by N gunicorn worker processes behind one port.

gunicorn's pre-fork model: the master binds the socket and forks the workers; each worker
builds its own App (engines, Kafka producer), Flask app, model cache, micro-batcher,
prediction recorder and hot-reload threads after the fork, so no connection, producer or
torch state is shared across processes. The master holds no database connection when it
forks (the migration ran and its engine was disposed before).
"""
from __future__ import annotations

import logging
import os
import socket
from typing import Any, Callable

from gunicorn.app.base import BaseApplication

from modelbus.settings import Settings

log = logging.getLogger("modelbus")

# Where a worker keeps what worker_exit stops (in its Flask app's extensions).
PROCESS = "modelbus.process"
# Seconds a worker has to finish its requests after SIGTERM (as `modelbus up` gives its parts).
GRACEFUL_SECONDS = 8
# A worker silent this long is killed and replaced; loading torch and the models counts.
WORKER_TIMEOUT_SECONDS = 120


def write_json_error(sock: socket.socket, status: int, reason: str, message: str) -> None:
    """gunicorn's own error responses (malformed request line or headers) as the API's JSON body."""
    from gunicorn.util import write_nonblock

    from modelbus.api.errors import error_body, http_error_code
    from modelbus.messages.jsonutil import compact_json

    if status == 400:
        message = f"malformed HTTP request: {message}"
    elif status == 431:
        message = f"request headers are too large: {message}"
    elif status == 500:
        message = "internal error; the server log has the details"
    body = compact_json(error_body(http_error_code(status, reason), message)).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin1")
    write_nonblock(sock, head + body)


def worker_app(settings: Settings) -> Any:
    """The Flask app of one worker process, its serving threads started (called after the fork)."""
    import gunicorn.util

    # gunicorn answers a request it cannot parse before the app sees it, with an HTML page of
    # util.write_error; every error of the API is JSON, so in this worker process it writes ours
    # (waitress's JsonErrorTask does the same with one worker).
    gunicorn.util.write_error = write_json_error
    from modelbus.api.app import sampler
    from modelbus.app import App
    from modelbus.runtime import Services
    from modelbus.web import create_api

    app = App(settings, migrate=False)  # the master migrated before forking
    flask_app = create_api(app)
    services = Services()  # gunicorn's worker owns the signals: no handlers of ours
    flask_app.extensions["modelbus"].start(services.start)
    services.start("dashboard-sampler", sampler(flask_app).run)
    flask_app.extensions[PROCESS] = (app, services)
    return flask_app


def _worker_exit(_server: Any, worker: Any) -> None:
    """Stop a worker's threads, flush its recorder and close its App (gunicorn's worker_exit hook)."""
    flask_app = getattr(worker, "wsgi", None)
    if flask_app is None or PROCESS not in getattr(flask_app, "extensions", {}):
        return
    app, services = flask_app.extensions[PROCESS]
    services.stop.set()
    services.wait(timeout=GRACEFUL_SECONDS)
    flask_app.extensions["modelbus"].close()
    app.close()


class PreforkServer(BaseApplication):
    """gunicorn's master over a socket bound beforehand, with gthread workers made by `factory`."""

    def __init__(self, factory: Callable[[], Any], listener: socket.socket, *, workers: int, threads: int,
                 on_ready: Callable[[], None] | None = None):
        self._factory = factory
        self._listener = listener
        self._on_ready = on_ready
        self._options = {
            # gunicorn takes the socket over (and closes it when it stops).
            "bind": [f"fd://{listener.detach()}"],
            "workers": workers,
            "worker_class": "gthread",
            "threads": threads,
            "timeout": WORKER_TIMEOUT_SECONDS,
            "graceful_timeout": GRACEFUL_SECONDS,
            "keepalive": 60,  # load generators and proxies keep their connections, as with waitress
            # Request headers up to 256 KiB, as waitress allows with one worker.
            "limit_request_field_size": 256 * 1024,
            "limit_request_line": 8190,
            "worker_exit": _worker_exit,
            "when_ready": lambda _arbiter: self._on_ready() if self._on_ready else None,
            "proc_name": "modelbus-api",
            "loglevel": logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower(),
            "control_socket_disable": True,  # gunicorn >= 25.1 opens one in $HOME by default
        }
        super().__init__()

    def load_config(self) -> None:
        """Apply the options gunicorn knows (older versions lack some)."""
        for key, value in self._options.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self) -> Any:
        """The worker's WSGI app, built in the worker after the fork."""
        return self._factory()


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (0 picks a free port); OSError when it cannot listen."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=2048, reuse_port=False)


def serve(settings: Settings, listener: socket.socket, workers: int, on_ready: Callable[[], None] | None = None) -> None:
    """Run the master until SIGINT/SIGTERM: every worker finishes its requests and stops its threads.

    Returns in the master only: a worker process ends with gunicorn's SystemExit (after
    worker_exit), which goes on up through the caller instead of returning into its code.
    """
    master = os.getpid()
    server = PreforkServer(lambda: worker_app(settings), listener, workers=workers, threads=settings.api_threads,
                           on_ready=on_ready)
    try:
        server.run()
    except SystemExit as exc:  # the arbiter ends with sys.exit once its workers are gone
        if os.getpid() != master or exc.code not in (None, 0):
            raise
