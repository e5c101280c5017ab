"""The OpenAPI 3.1 document of the HTTP API, generated from the declared messages and query models
(a test checks it against the app's routes, and schemathesis checks the server against it)."""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Union

from pydantic import BaseModel, TypeAdapter

from modelbus.api.assets import ASSETS
from modelbus.api.schemas import names as schema_names
from modelbus.messages import http
from modelbus.messages.schemas import (
    DATASET_PATTERN,
    Dataset,
    ErrorAnswer,
    Event,
    ModelKind,
    Prediction,
    PredictionError,
    PredictionRequest,
    Version,
    csv_pattern,
)
from modelbus.messages.types import BUILD_COMMANDS

REF = "#/components/schemas/{model}"
_WHY = {
    400: "Invalid input: the code says which rule",
    401: "Missing or wrong bearer token",
    404: "Unknown model, version, dataset or name",
    413: "Body too large",
    415: "The body is not sent as JSON (Content-Type: application/json)",
    503: "The database, the broker or a model is unavailable",
}


class _Components:
    """Component schemas gathered while the document refers to them."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def schema(self, tp: Any, mode: str = "serialization") -> dict[str, Any]:
        """A $ref to tp's component schema (a model), or tp's own schema with its parts as components."""
        schema = TypeAdapter(tp).json_schema(mode=mode, ref_template=REF)  # type: ignore[arg-type]
        self.schemas.update(schema.pop("$defs", {}))
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            self.schemas[tp.__name__] = schema
            return {"$ref": REF.format(model=tp.__name__)}
        return schema

    def json(self, tp: Any, description: str) -> dict[str, Any]:
        """A JSON response of type tp."""
        return {"description": description, "content": {"application/json": {"schema": self.schema(tp)}}}

    def errors(self, *statuses: int, answer: Any = ErrorAnswer) -> dict[str, Any]:
        """The error responses of an operation."""
        return {str(status): self.json(answer, _WHY[status]) for status in statuses}

    def query(self, model: type[BaseModel]) -> list[dict[str, Any]]:
        """The query parameters of a model: optional, with their real bounds."""
        props = model.model_json_schema(ref_template=REF)
        self.schemas.update(props.pop("$defs", {}))
        params = []
        for name, field in model.model_fields.items():
            prop = dict(props["properties"][name])
            # A query parameter is absent rather than null.
            prop = next((b for b in prop.pop("anyOf", []) if b.get("type") != "null"), None) or prop
            prop.pop("title", None)
            if field.default is not None:
                prop["default"] = field.default
            params.append({"name": name, "in": "query", "required": False, "description": field.description or "",
                           "schema": prop})
        return params


def _path(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


# Any JSON value: a list body is decoded whole (an integer beyond signed 64-bit anywhere refuses
# it, which JSON Schema cannot tell from a float), then each element is parsed and answered on its own.
_JSON_VALUE = {"anyOf": [
    {"type": "null"}, {"type": "boolean"}, {"type": "string"}, {"type": "number"},
    {"type": "array", "items": {"$ref": REF.format(model="JsonValue")}},
    {"type": "object", "additionalProperties": {"$ref": REF.format(model="JsonValue")}},
]}


def _one_or_many(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"oneOf": [schema, {"type": "array", "minItems": 1, "description": description,
                               "items": {"$ref": REF.format(model="JsonValue")}}]}


@lru_cache(maxsize=2)
def openapi_document(token_required: bool = False) -> dict[str, Any]:
    """The document served at /openapi.json and /swagger.json; write routes need the token when one is set."""
    c = _Components()
    security = {"security": [{"bearer": []}]} if token_required else {}
    auth = (401,) if token_required else ()
    model_param = _path("model", "Model kind.", TypeAdapter(ModelKind).json_schema())
    predict_errors = c.errors(400, 404, 503, answer=Union[PredictionError, ErrorAnswer])
    paths: dict[str, Any] = {
        "/api/predict/{model}/{csv}": {"get": {
            "summary": "Predict one row (the seed's route)",
            "tags": ["seed"],
            "parameters": [
                model_param,
                _path("csv", "Feature values, comma separated (e.g. 3,4,5).",
                      {"type": "string", "pattern": csv_pattern(1)}),
                *c.query(http.PredictQuery),
            ],
            "responses": {"200": c.json(Prediction, "The prediction"), **predict_errors},
        }},
        "/api/predict": {"post": {
            "summary": "Predict one request or a list of requests",
            "description": "One request object answers one prediction (or an error with a 4xx status). A JSON "
                           "array answers an array in the same order, with a per-item `error` for bad items. "
                           "Requests are validated exactly as on prediction_request_topic.",
            "tags": ["predict"],
            "requestBody": _body(_one_or_many(c.schema(PredictionRequest, "validation"),
                                              "Each element is a prediction request, answered on its own.")),
            "responses": {
                "200": c.json(Union[Prediction, list[Union[Prediction, PredictionError]]], "The prediction(s)"),
                **predict_errors, **c.errors(413),
            },
        }},
        "/api/events": {
            "post": {
                "summary": "Post one event or a list of events (training records and commands)",
                "description": "A rejected single event is answered with its error and kept as a dead letter; "
                               "in a list each event gets its own outcome.",
                "tags": ["events"],
                **security,
                "requestBody": _body(_one_or_many(c.schema(Event, "validation"),
                                                  "Each element is an event, with its own outcome.")),
                "responses": {
                    "202": c.json(Union[http.Outcome, list[http.Outcome]],
                                  "Accepted into the log (embedded) or queued on event_topic (Kafka)"),
                    **c.errors(400, *auth, 404, 413, 503),
                },
            },
            "get": {
                "summary": "Read the log, oldest first",
                "tags": ["events"],
                "parameters": c.query(http.EventQuery),
                "responses": {"200": c.json(http.EventPage, "A page of events"), **c.errors(400, 503)},
            },
        },
        "/api/errors": {"get": {
            "summary": "Dead letters: refused messages with their reasons, oldest first",
            "tags": ["events"],
            "parameters": c.query(http.PageQuery),
            "responses": {"200": c.json(http.ErrorPage, "A page of dead letters"), **c.errors(400, 503)},
        }},
        "/api/alerts": {"get": {
            "summary": "Alerts raised by the rules in settings, newest first",
            "tags": ["monitoring"],
            "parameters": c.query(http.AlertQuery),
            "responses": {"200": c.json(http.AlertPage, "A page of alerts"), **c.errors(400, 503)},
        }},
        "/api/feedback": {"get": {
            "summary": "Feedback events and what became of each (joined, pending, unmatched, duplicate, invalid)",
            "tags": ["monitoring"],
            "parameters": c.query(http.FeedbackQuery),
            "responses": {"200": c.json(http.FeedbackPage, "A page of feedback"), **c.errors(400, 503)},
        }},
        "/api/models": {"get": {
            "summary": "Every model and dataset with its production version",
            "tags": ["models"],
            "responses": {"200": c.json(http.ModelList, "Models"), **c.errors(503)},
        }},
        "/api/models/{model}": {"get": {
            "summary": "Versions (metrics, params, lineage) and build attempts of one model",
            "tags": ["models"],
            "parameters": [model_param, *c.query(http.ModelQuery)],
            "responses": {"200": c.json(http.ModelDetail, "The model"), **c.errors(400, 404, 503)},
        }},
        "/api/datasets/{name}/schema": {"get": {
            "summary": "A dataset's typed fields and the JSON Schemas of its training and prediction payloads",
            "tags": ["models"],
            "parameters": [_path("name", "Dataset name.", TypeAdapter(Dataset).json_schema())],
            "responses": {"200": c.json(http.DatasetSchemaView, "The dataset's payloads"), **c.errors(404, 503)},
        }},
        "/api/schemas": {"get": {
            "summary": "The names of the messages whose JSON Schema /api/schemas/{name} serves",
            "tags": ["schemas"],
            "responses": {"200": c.json(http.SchemaList, "Message names")},
        }},
        "/api/schemas/{name}": {"get": {
            "summary": "The JSON Schema of one message (events, requests, answers, dead letters, build params)",
            "tags": ["schemas"],
            "parameters": [_path("name", "Message name, as /api/schemas lists them.",
                                 {"type": "string", "enum": schema_names()})],
            "responses": {"200": {"description": "A JSON Schema (draft 2020-12)",
                                  "content": {"application/json": {"schema": {"type": "object"}}}},
                          **c.errors(404)},
        }},
        "/healthz": {"get": {
            "summary": "Liveness and database reachability",
            "tags": ["operations"],
            "responses": {"200": c.json(http.Health, "Healthy"), **c.errors(503)},
        }},
        "/metrics": {"get": {
            "summary": "Prometheus metrics",
            "tags": ["operations"],
            "responses": {"200": {"description": "Prometheus text format",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}},
        }},
        "/docs": {"get": {
            "summary": "Swagger UI for this document",
            "tags": ["operations"],
            "responses": {"200": {"description": "An HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}},
        }},
        "/docs/{asset}": {"get": {
            "summary": "A file of Swagger UI",
            "tags": ["operations"],
            "parameters": [_path("asset", "File name.", {"type": "string", "enum": sorted(ASSETS)})],
            "responses": {"200": {"description": "The file",
                                  "content": {mime: {"schema": {"type": "string"}} for mime in sorted(set(ASSETS.values()))}},
                          **c.errors(404)},
        }},
    }
    for name in ("/openapi.json", "/swagger.json"):
        paths[name] = {"get": {"summary": "This document" + (" (the seed's name for it)" if "swagger" in name else ""),
                               "tags": ["operations"],
                               "responses": {"200": {"description": "OpenAPI 3.1 document",
                                                     "content": {"application/json": {"schema": {"type": "object"}}}}}}}
    for command, kind in BUILD_COMMANDS.items():
        paths[f"/api/{command}"] = {"get": {
            "summary": f"Queue a {command} command (the seed's route)",
            "tags": ["seed"],
            **security,
            "parameters": c.query(http.BuildQuery),
            "responses": {"202": c.json(http.Outcome, f"The {kind} build is queued"), **c.errors(400, *auth, 503)},
        }}
    version_param = _path("version", "Version number.", TypeAdapter(Version).json_schema())
    writes = {**security, "tags": ["dashboard"]}
    paths["/api/models/{model}/build"] = {"post": {
        "summary": "Queue a build command of the model (the dashboard's Build button)",
        **writes,
        "parameters": [model_param],
        "requestBody": _body(c.schema(http.BuildRequest, mode="validation")),
        "responses": {"202": c.json(http.Outcome, "The build command is queued"),
                      **c.errors(400, *auth, 404, 415, 503)},
    }}
    paths["/api/models/{model}/promote"] = {"post": {
        "summary": "Queue a promote command: production moves when the builds handler applies it",
        **writes,
        "parameters": [model_param],
        "requestBody": _body(c.schema(http.PromoteRequest, mode="validation")),
        "responses": {"202": c.json(http.Outcome, "The promote command is queued"),
                      **c.errors(400, *auth, 404, 415, 503)},
    }}
    paths["/api/models/{model}/versions/{version}/verify"] = {
        "post": {
            "summary": "Rebuild the version from its lineage in the background and compare it bit for bit",
            **writes,
            "parameters": [model_param, version_param, *c.query(http.VerifyQuery)],
            "responses": {"202": c.json(http.VerifyState, "The run is queued or running"),
                          **c.errors(400, *auth, 404, 503)},
        },
        "get": {
            "summary": "The state of this process's latest verify of the version",
            "tags": ["dashboard"],
            "parameters": [model_param, version_param, *c.query(http.VerifyQuery)],
            "responses": {"200": c.json(http.VerifyState, "never, queued, running, ok, mismatch or failed"),
                          **c.errors(400, 404, 503)},
        },
    }
    paths["/api/windows/{name}"] = {"get": {
        "summary": "Closed windows of a declared window (feature rows), ordered by end, key and start, with its status",
        "tags": ["windows"],
        "parameters": [_path("name", "The window's name, as declared in [[windows]].",
                             {"type": "string", "pattern": DATASET_PATTERN}), *c.query(http.WindowQuery)],
        "responses": {"200": c.json(http.WindowPage, "A page of closed windows"), **c.errors(400, 404, 503)},
    }}
    paths["/api/dashboard/overview"] = {"get": {
        "summary": "The overview page's data: log head, handlers, build queue, builds, dead letters by reason, "
                   "models, and the series this process sampled (log head, ingest and prediction rates, lag)",
        "tags": ["dashboard"],
        "responses": {"200": c.json(dict[str, Any], "The overview"), **c.errors(503)},
    }}
    paths["/api/dashboard/windows"] = {"get": {
        "summary": "The windows page's data: every declared window with its settings, closed rows, late events and "
                   "watermark",
        "tags": ["dashboard"],
        "responses": {"200": c.json(dict[str, Any], "The windows"), **c.errors(503)},
    }}
    paths["/api/dashboard/models"] = {"get": {
        "summary": "Per model and dataset: each version's main metric and build time, and the promotions",
        "tags": ["dashboard"],
        "parameters": c.query(http.HistoryQuery),
        "responses": {"200": c.json(dict[str, Any], "Model histories"), **c.errors(400, 503)},
    }}
    paths["/api/dashboard/dead-letters"] = {"get": {
        "summary": "Dead letters as /api/errors pages them, optionally of one reason, with the count per reason",
        "tags": ["dashboard"],
        "parameters": c.query(http.DeadLetterQuery),
        "responses": {"200": c.json(dict[str, Any], "A page of dead letters"), **c.errors(400, 503)},
    }}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "modelbus",
            "version": "0.1.0",
            "description": "Event-sourced command bus for ML models: post events, build models, get predictions. "
                           "Every error is JSON {\"error\": {\"code\", \"message\"}}. The JSON Schema of each "
                           "message is at /api/schemas/{name}.",
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted({**c.schemas, "JsonValue": _JSON_VALUE}.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "Needed by write routes when MODELBUS_API_TOKEN is set"}},
        },
    }
