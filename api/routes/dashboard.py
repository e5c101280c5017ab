"""The dashboard: server-rendered pages whose scripts draw charts and refresh from the JSON routes."""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, render_template, request, send_file

from modelbus.api.context import parts
from modelbus.api.errors import ApiError, is_outage
from modelbus.db import registry
from modelbus.messages.http import DEFAULT_PAGE
from modelbus.messages.parse import VERSION_MAX
from modelbus.messages.types import DEFAULT_DATASET, MAIN_METRICS, MODEL_KINDS

bp = Blueprint("dashboard", __name__, template_folder="../templates", static_folder="../static",
               static_url_path="/static/dashboard")

# No inline script and no eval: scripts come from this origin only. plotly.js needs two
# relaxations, neither of which runs code: it sets inline styles on its SVG (style-src
# 'unsafe-inline') and draws heat maps as PNG data URLs (img-src data:).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
POLL_SECONDS = 5


@bp.after_request
def _secure(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    return response


@bp.errorhandler(ApiError)
def _error_page(exc: ApiError) -> tuple[str, int]:
    title = "Unavailable" if exc.status == 503 else "Not found"
    return render_template("error.html", page="error", title=title, message=exc.message), exc.status


def _page(template: str, page: str, title: str, **context: Any) -> str:
    return render_template(template, page=page, title=title, poll_seconds=POLL_SECONDS, **context)


def plotly_bundle() -> Path:
    """The plotly.js bundle that ships inside the `plotly` wheel."""
    return Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))


@bp.get("/static/vendor/plotly.min.js")
def plotly_js() -> Response:
    """plotly.js from the installed plotly package (no CDN: the dashboard works offline)."""
    return send_file(plotly_bundle(), mimetype="text/javascript", max_age=3600, conditional=True)


@bp.get("/")
def overview() -> str:
    """Log head and ingest rate, handler lag, build queue, dead letters by reason, predictions per second."""
    return _page("overview.html", "overview", "Overview")


@bp.get("/models")
def models() -> str:
    """Every model and dataset with its production version, and its main metric over versions and time."""
    return _page("models.html", "models", "Models")


def _known(model: str) -> str:
    if model not in MODEL_KINDS:
        raise ApiError("unknown_model", f"model '{model}' is unknown (known: {', '.join(sorted(MODEL_KINDS))})")
    return model


@bp.get("/models/<model>")
def model_page(model: str) -> str:
    """One model: its versions per dataset with promote buttons, its build attempts, a build button."""
    return _page("model.html", "model", f"Model {_known(model)}", model=model,
                 dataset=request.args.get("dataset") or "")


def _scalars(metrics: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in sorted(metrics.items()) if isinstance(v, (int, float, str)) and not isinstance(v, bool)]


@bp.get("/models/<model>/versions/<int:version>")
def version_page(model: str, version: int) -> str:
    """One version: params, metrics, confusion matrix, class counts, lineage, verify."""
    _known(model)
    dataset = request.args.get("dataset") or DEFAULT_DATASET
    engine = parts().store.engine
    try:
        versions = registry.list_versions(engine, model, dataset) if version <= VERSION_MAX else []
        production = registry.aliases(engine).get((model, dataset))
    except Exception as exc:
        if not is_outage(exc):
            raise
        raise ApiError("unavailable", f"the registry cannot be read now ({type(exc).__name__}); this page "
                                      "retries when reloaded") from None
    found = next((mv for mv in versions if mv.version == version), None)
    if found is None:
        raise ApiError("unknown_version", f"no {model} version {version} on dataset '{dataset}'")
    return _page("version.html", "version", f"{model} v{version} ({dataset})", model=model, dataset=dataset,
                 mv=found, production=production, scalars=_scalars(found.metrics), metric=MAIN_METRICS[model])


@bp.get("/windows")
def windows_page() -> str:
    """Every declared window: its settings, closed rows, late events and watermark; one window's rows."""
    name = request.args.get("name") or ""
    return _page("windows.html", "windows", f"Window {name}" if name else "Windows", name=name, limit=DEFAULT_PAGE)


@bp.get("/alerts")
def alerts_page() -> str:
    """Alerts raised by the rules, the firings per rule, and what became of the feedback."""
    return _page("alerts.html", "alerts", "Alerts", limit=DEFAULT_PAGE)


@bp.get("/events")
def events_page() -> str:
    """The log, filterable by type, name and dataset, a page at a time."""
    return _page("events.html", "events", "Events", limit=DEFAULT_PAGE)


@bp.get("/dead-letters")
def dead_letters_page() -> str:
    """Rejected messages with their reasons and raw bytes, filterable by reason."""
    return _page("dead_letters.html", "dead-letters", "Dead letters", limit=DEFAULT_PAGE)
