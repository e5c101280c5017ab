"""`modelbus predict`: predictions from the command line, in this process or from a running API."""
from __future__ import annotations

import json
import logging
import sys
from typing import Any

import click

from modelbus.cli.context import open_app
from modelbus.messages.parse import VERSION_MAX
from modelbus.messages.types import DEFAULT_DATASET, MODEL_KINDS

KIND = click.Choice(sorted(MODEL_KINDS))
HTTP_TIMEOUT = 30.0


def _read_rows(path: str) -> list[str]:
    """The rows of a file ('-' is stdin), one CSV row of feature values a line; a header line is skipped."""
    from modelbus.cli.events import _is_header, _read_text

    lines = [line.strip() for line in _read_text(path).splitlines() if line.strip()]
    if lines and _is_header([cell.strip() for cell in lines[0].split(",")]):
        click.echo(f"{path}: line 1 has no numeric value, skipped as the header: {lines[0][:200]}", err=True)
        lines = lines[1:]
    return lines


def _requests(model: str, rows: list[str], dataset: str, version: int | None) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        request: dict[str, Any] = {"model": model, "payload": row, "dataset": dataset}
        if version is not None:
            request["version"] = version
        out.append(request)
    return out


def _in_process(ctx: click.Context, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Answers from the registry in this process: the API's parser, model cache and forward pass."""
    from modelbus.handlers.serving.cache import ModelCache
    from modelbus.handlers.serving.predict import dataset_labels, parse_item_obj, predict_batch
    from modelbus.handlers.serving.registry import DbRegistry

    app = open_app(ctx)
    # Which version a server loads is news in its log; here the answers say it.
    logging.getLogger("modelbus.handlers.serving.cache").setLevel(logging.WARNING)
    cache = ModelCache(DbRegistry(app.engine))
    return predict_batch(cache, [parse_item_obj(r) for r in requests], labels=dataset_labels(app.settings.datasets))


def _from_api(url: str, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Answers of a running API (POST /api/predict with the list)."""
    import urllib.error
    import urllib.request

    target = url.rstrip("/") + "/api/predict"
    call = urllib.request.Request(target, data=json.dumps(requests).encode(), method="POST",
                                  headers={"Content-Type": "application/json", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(call, timeout=HTTP_TIMEOUT) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read())["error"]
            detail = f"{error['code']}: {error['message']}"
        except Exception:
            detail = f"HTTP {exc.code} {exc.reason}"
        raise click.ClickException(f"{target} answered {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise click.ClickException(f"cannot reach {target}: {reason} (is `modelbus up` running there?)") from None


def _line(answer: dict[str, Any]) -> str:
    text = (f"{answer['model']} v{answer['version']} on '{answer['dataset']}': {answer['input']} -> {answer['result']}")
    if "label" in answer:
        text += f" ({answer['label']})"
    if answer.get("probabilities"):
        text += f"  p={max(answer['probabilities']):.3f}"
    return text


@click.command()
@click.argument("model", type=KIND)
@click.argument("rows", nargs=-1)
@click.option("-f", "--file", "file", help="A file of rows, one CSV row of feature values a line; '-' reads stdin.")
@click.option("--dataset", default=DEFAULT_DATASET, show_default=True)
@click.option("--version", type=click.IntRange(1, VERSION_MAX), help="Pin a version instead of production.")
@click.option("--json", "as_json", is_flag=True, help="Print each answer as the API's JSON, one a line.")
@click.option("--url", envvar="MODELBUS_API_URL",
              help="Ask the API at this URL (e.g. http://localhost:8080; env MODELBUS_API_URL) instead of loading the "
                   "model here.")
@click.pass_context
def predict(ctx: click.Context, model: str, rows: tuple[str, ...], file: str | None, dataset: str,
            version: int | None, as_json: bool, url: str | None) -> None:
    """Predict rows of feature values with a model's production (or pinned) version; exit 1 if any row fails.

    \b
    modelbus predict mlp 3,4,5
    modelbus predict linear 3,4,5 7,8,9 --json
    modelbus predict mlp -f rows.csv --version 2
    modelbus predict mlp 3,4,5 --url http://localhost:8080

    Without --url the model is read from the registry (the database of the settings) and run in
    this process, with the same parser and forward pass as the API.
    """
    wanted = list(rows) + (_read_rows(file) if file is not None else [])
    if not wanted:
        raise click.UsageError("give rows of feature values (e.g. 3,4,5) or a file of them with -f")
    requests = _requests(model, wanted, dataset, version)
    answers = _from_api(url, requests) if url else _in_process(ctx, requests)
    failed = 0
    for row, answer in zip(wanted, answers):
        if as_json:
            click.echo(json.dumps(answer, ensure_ascii=False))
        elif "error" in answer:
            click.echo(f"{row}: {answer['error']['code']}: {answer['error']['message']}", err=True)
        else:
            click.echo(_line(answer))
        failed += "error" in answer
    if failed:
        if not as_json:
            click.echo(f"{failed} of {len(wanted)} rows failed", err=True)
        sys.exit(1)
