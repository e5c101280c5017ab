"""`modelbus open`: the dashboard's URL, opened in a browser when this machine has a graphical one."""
from __future__ import annotations

import os
import sys

import click

HEALTH_TIMEOUT = 3.0


def dashboard_url(host: str, port: int) -> str:
    """The URL a browser on this machine reaches the API at (a wildcard address is reached on loopback)."""
    if host in ("0.0.0.0", "", "::", "[::]"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def _answers(url: str) -> str | None:
    """None when the API answers /healthz, else why not."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url + "healthz", timeout=HEALTH_TIMEOUT):
            return None
    except urllib.error.HTTPError as exc:
        return None if exc.code == 503 else f"HTTP {exc.code}"  # 503: up, but its database is not
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))


def _graphical() -> bool:
    """A browser can be shown: a display on Linux and the BSDs, always on macOS and Windows."""
    # Without a display Python's webbrowser falls back to text browsers (lynx, w3m), which
    # would take over this terminal.
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@click.command("open")
@click.option("--url", envvar="MODELBUS_API_URL",
              help="The API's URL (env MODELBUS_API_URL) [default: from settings api_host and api_port, "
                   "http://127.0.0.1:8080/].")
@click.option("--port", type=click.IntRange(1, 65535), help="The API's port [default: settings.api_port, 8080].")
@click.option("--browser/--no-browser", default=True, help="Open it in a browser when there is one.")
@click.pass_context
def open_dashboard(ctx: click.Context, url: str | None, port: int | None, browser: bool) -> None:
    """Print the dashboard's URL and open it in a browser; exit 1 when nothing answers there."""
    settings = ctx.obj["settings"]
    if url:
        url = url.rstrip("/") + "/"
    else:
        url = dashboard_url(settings.api_host, port or settings.api_port)
    click.echo(url)
    problem = _answers(url)
    if problem is not None:
        click.echo(f"nothing answers at {url} ({problem}): start it with `modelbus up` (or give --url)", err=True)
        sys.exit(1)
    if browser and _graphical():
        import webbrowser

        if not webbrowser.open(url):
            click.echo("no browser could be started; open the URL above", err=True)
