"""A TCP proxy for fault tests: put it between a process and a server, then freeze and thaw it.

Frozen, it moves no byte in either direction but keeps every connection open, and still
accepts new ones (their bytes wait too): to its clients the server looks like a process
stopped with SIGSTOP, the case timeouts must cover (a refused or reset connection fails at
once; a silent one waits forever). Thawed, everything held is delivered.

    with FreezableProxy("127.0.0.1", 3306) as proxy:
        engine = make_engine(proxy.url("mysql+pymysql://root@127.0.0.1:3306/test"))
        proxy.freeze()
        ...
        proxy.thaw()
"""
from __future__ import annotations

import socket
import threading

from sqlalchemy.engine import make_url

CHUNK = 64 * 1024


class FreezableProxy:
    """Forwards 127.0.0.1:<port> to host:port with a thread per direction of each connection."""

    def __init__(self, host: str, port: int, listen_host: str = "127.0.0.1"):
        self.target = (host, port)
        self._listener = socket.create_server((listen_host, 0))
        self.host = listen_host
        self.port: int = self._listener.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self.accepted = 0
        self._acceptor = threading.Thread(target=self._accept, name=f"proxy-{self.port}", daemon=True)

    # -- control ------------------------------------------------------------------------

    def start(self) -> FreezableProxy:
        """Start accepting connections."""
        self._acceptor.start()
        return self

    def freeze(self) -> None:
        """Stop moving bytes both ways; connections stay open and new ones are accepted."""
        self._flowing.clear()

    def thaw(self) -> None:
        """Deliver what was held and forward again."""
        self._flowing.set()

    @property
    def frozen(self) -> bool:
        """True between freeze() and thaw()."""
        return not self._flowing.is_set()

    def drop_connections(self) -> None:
        """Close every open connection and keep listening (a server restart, an idle timeout)."""
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        for sock in sockets:
            # A close alone leaves a pump blocked in recv() holding the socket open, so the
            # server would never see its client go (nor roll back its transaction).
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            _close(sock)

    def close(self) -> None:
        """Stop listening and close every connection (clients then see a reset, not a freeze)."""
        self._closed.set()
        self._flowing.set()
        try:
            # Wakes the acceptor blocked in accept(), which a close alone does not.
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        self.drop_connections()
        self._acceptor.join(5)

    def url(self, database_url: str) -> str:
        """The SQLAlchemy URL `database_url` with its host and port pointing at this proxy."""
        return make_url(database_url).set(host=self.host, port=self.port).render_as_string(hide_password=False)

    @property
    def open_connections(self) -> int:
        """Client connections currently open through the proxy."""
        with self._lock:
            return len(self._sockets) // 2

    def __enter__(self) -> FreezableProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- forwarding ---------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._closed.is_set():
                    _close(client)
                    _close(upstream)
                    return
                self._sockets.update((client, upstream))
                self.accepted += 1
            pair = _Pair(self, client, upstream)
            for src, dst, name in ((client, upstream, "up"), (upstream, client, "down")):
                threading.Thread(target=pair.pump, args=(src, dst), name=f"proxy-{self.port}-{name}", daemon=True).start()

    def _hold(self) -> bool:
        """Wait while frozen; False once the proxy is closed (close() also ends the wait)."""
        self._flowing.wait()
        return not self._closed.is_set()

    def _forget(self, *sockets: socket.socket) -> None:
        with self._lock:
            for sock in sockets:
                self._sockets.discard(sock)


class _Pair:
    """The two sockets of one proxied connection; closed when both directions have ended."""

    def __init__(self, proxy: FreezableProxy, client: socket.socket, upstream: socket.socket):
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self._ended = 0
        self._lock = threading.Lock()

    def pump(self, src: socket.socket, dst: socket.socket) -> None:
        """Copy src to dst; a chunk read while frozen is held until the thaw."""
        try:
            while True:
                data = src.recv(CHUNK)
                # Read first, then wait: a freeze that starts while this thread sleeps in recv
                # still holds the chunk it returns, so no byte moves after freeze().
                if not self.proxy._hold():
                    return
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
        except OSError:
            # One side reset: end both directions, as a stopped peer's kernel would not.
            _close(src)
            _close(dst)
        finally:
            with self._lock:
                self._ended += 1
                done = self._ended == 2
            if done:
                self.proxy._forget(self.client, self.upstream)
                _close(self.client)
                _close(self.upstream)


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
