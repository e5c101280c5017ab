"""The OpenAPI 3 document of the HTTP API (a test checks it against the app's routes)."""
from __future__ import annotations

from typing import Any

from modelbus.messages.types import BUILD_COMMANDS, MODEL_KINDS

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {
        400: "Invalid input (code says which rule)",
        401: "Missing or wrong bearer token",
        404: "Unknown model, version or dataset",
        413: "Body too large",
        503: "Model or database unavailable",
    }
    return {str(s): _json(_ERROR, text[s]) for s in statuses}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def _path(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema or {"type": "string"}}


_PAGE = [
    _query("after", "Return items after this cursor (position or id); use `next` of the previous page.",
           {"type": "integer", "minimum": 0, "default": 0}),
    _query("limit", "Page size.", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
]
_BEARER = [{"bearer": []}]


def openapi_document() -> dict[str, Any]:
    """The document served at /openapi.json and /swagger.json."""
    model_param = _path("model", "Model kind.", {"type": "string", "enum": list(MODEL_KINDS)})
    paths: dict[str, Any] = {
        "/api/predict/{model}/{csv}": {
            "get": {
                "summary": "Predict one row (the seed's route)",
                "tags": ["seed"],
                "parameters": [
                    model_param,
                    _path("csv", "Feature values, comma separated (e.g. 3,4,5)."),
                    _query("dataset", "Dataset (default 'default').", {"type": "string"}),
                    _query("version", "Pin a model version instead of production.", {"type": "integer", "minimum": 1}),
                    _query("id", "Request id echoed in the answer.", {"type": "string"}),
                ],
                "responses": {"200": _json({"$ref": "#/components/schemas/Prediction"}, "The prediction"),
                              **_errors(400, 404, 503)},
            }
        },
        "/api/predict": {
            "post": {
                "summary": "Predict one request or a list of requests",
                "description": "One request object answers one prediction (or an error with a 4xx status). A JSON "
                               "array answers an array in the same order, with a per-item `error` for bad items. "
                               "Requests are validated exactly as on prediction_request_topic.",
                "tags": ["predict"],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
                    {"$ref": "#/components/schemas/PredictionRequest"},
                    {"type": "array", "items": {"$ref": "#/components/schemas/PredictionRequest"}, "minItems": 1},
                ]}}}},
                "responses": {
                    "200": _json({"oneOf": [
                        {"$ref": "#/components/schemas/Prediction"},
                        {"type": "array", "items": {"oneOf": [{"$ref": "#/components/schemas/Prediction"},
                                                              {"$ref": "#/components/schemas/PredictionError"}]}},
                    ]}, "The prediction(s)"),
                    **_errors(400, 404, 413, 503),
                },
            }
        },
        "/api/events": {
            "post": {
                "summary": "Post one event or a list of events (training records and commands)",
                "tags": ["events"],
                "security": _BEARER,
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
                    {"$ref": "#/components/schemas/Event"},
                    {"type": "array", "items": {"$ref": "#/components/schemas/Event"}, "minItems": 1},
                ]}}}},
                "responses": {
                    "202": _json({"oneOf": [{"$ref": "#/components/schemas/Outcome"},
                                            {"type": "array", "items": {"$ref": "#/components/schemas/Outcome"}}]},
                                 "Accepted into the log (embedded) or queued on event_topic (Kafka)"),
                    **_errors(400, 401, 413, 503),
                },
            },
            "get": {
                "summary": "Read the log, oldest first",
                "tags": ["events"],
                "parameters": [*_PAGE, _query("type", "training or command", {"type": "string", "enum": ["training", "command"]}),
                               _query("name", "Event name (training, build_mlp, promote, ...)", {"type": "string"}),
                               _query("dataset", "Dataset", {"type": "string"})],
                "responses": {"200": _json({"$ref": "#/components/schemas/EventPage"}, "A page of events"),
                              **_errors(400, 503)},
            },
        },
        "/api/errors": {
            "get": {
                "summary": "Dead letters: rejected messages with their reasons, oldest first",
                "tags": ["events"],
                "parameters": _PAGE,
                "responses": {"200": _json({"$ref": "#/components/schemas/ErrorPage"}, "A page of dead letters"),
                              **_errors(400, 503)},
            }
        },
        "/api/models": {
            "get": {
                "summary": "Every model and dataset with its production version",
                "tags": ["models"],
                "responses": {"200": _json({"type": "object"}, "Models"), **_errors(503)},
            }
        },
        "/api/models/{model}": {
            "get": {
                "summary": "Versions (metrics, params, lineage) and build attempts of one model",
                "tags": ["models"],
                "parameters": [model_param, _query("dataset", "Only this dataset", {"type": "string"}),
                               _query("builds", "How many build attempts to list", {"type": "integer", "default": 50})],
                "responses": {"200": _json({"type": "object"}, "The model"), **_errors(400, 404, 503)},
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness and database reachability",
                "tags": ["operations"],
                "responses": {"200": _json({"type": "object"}, "Healthy"), **_errors(503)},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "tags": ["operations"],
                "responses": {"200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}},
            }
        },
        "/openapi.json": {
            "get": {"summary": "This document", "tags": ["operations"],
                    "responses": {"200": _json({"type": "object"}, "OpenAPI 3 document")}}
        },
        "/swagger.json": {
            "get": {"summary": "This document (the seed's name for it)", "tags": ["operations"],
                    "responses": {"200": _json({"type": "object"}, "OpenAPI 3 document")}}
        },
    }
    version_param = _path("version", "Version number.", {"type": "integer", "minimum": 1})
    dataset_query = _query("dataset", "Dataset (default 'default').", {"type": "string"})
    paths["/api/models/{model}/build"] = {
        "post": {
            "summary": "Queue a build command of the model (the dashboard's Build button)",
            "tags": ["dashboard"],
            "security": _BEARER,
            "parameters": [model_param],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False,
                "properties": {"dataset": {"type": "string"}, "params": {"type": "object"}}}}}},
            "responses": {"202": _json({"$ref": "#/components/schemas/Outcome"}, "The build command is queued"),
                          **_errors(400, 401, 404, 503)},
        }
    }
    paths["/api/models/{model}/promote"] = {
        "post": {
            "summary": "Queue a promote command: production moves when the builds handler applies it",
            "tags": ["dashboard"],
            "security": _BEARER,
            "parameters": [model_param],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False, "required": ["version"],
                "properties": {"dataset": {"type": "string"}, "version": {"type": "integer", "minimum": 1}}}}}},
            "responses": {"202": _json({"$ref": "#/components/schemas/Outcome"}, "The promote command is queued"),
                          **_errors(400, 401, 404, 503)},
        }
    }
    paths["/api/models/{model}/versions/{version}/verify"] = {
        "post": {
            "summary": "Rebuild the version from its lineage in the background and compare it bit for bit",
            "tags": ["dashboard"],
            "security": _BEARER,
            "parameters": [model_param, version_param, dataset_query],
            "responses": {"202": _json({"$ref": "#/components/schemas/VerifyState"}, "The run is queued or running"),
                          **_errors(400, 401, 404, 503)},
        },
        "get": {
            "summary": "The state of this process's latest verify of the version",
            "tags": ["dashboard"],
            "parameters": [model_param, version_param, dataset_query],
            "responses": {"200": _json({"$ref": "#/components/schemas/VerifyState"}, "never, queued, running, ok, "
                                                                                     "mismatch or failed"),
                          **_errors(400, 404, 503)},
        },
    }
    paths["/api/dashboard/overview"] = {
        "get": {
            "summary": "The overview page's data: log head, handlers, build queue, builds, dead letters by reason, "
                       "models, and the series this process sampled (log head, ingest and prediction rates, lag)",
            "tags": ["dashboard"],
            "responses": {"200": _json({"type": "object"}, "The overview"), **_errors(503)},
        }
    }
    paths["/api/dashboard/models"] = {
        "get": {
            "summary": "Per model and dataset: each version's main metric and build time, and the promotions",
            "tags": ["dashboard"],
            "parameters": [_query("model", "Only this model kind", {"type": "string", "enum": list(MODEL_KINDS)}),
                           _query("dataset", "Only this dataset", {"type": "string"})],
            "responses": {"200": _json({"type": "object"}, "Model histories"), **_errors(404, 503)},
        }
    }
    paths["/api/dashboard/dead-letters"] = {
        "get": {
            "summary": "Dead letters as /api/errors pages them, optionally of one reason, with the count per reason",
            "tags": ["dashboard"],
            "parameters": [*_PAGE, _query("code", "Only dead letters with this reason (error code)", {"type": "string"})],
            "responses": {"200": _json({"$ref": "#/components/schemas/ErrorPage"}, "A page of dead letters"),
                          **_errors(400, 503)},
        }
    }
    for command, kind in BUILD_COMMANDS.items():
        paths[f"/api/{command}"] = {
            "get": {
                "summary": f"Queue a {command} command (the seed's route)",
                "tags": ["seed"],
                "security": _BEARER,
                "parameters": [_query("dataset", "Dataset to build (default 'default').", {"type": "string"})],
                "responses": {"202": _json({"$ref": "#/components/schemas/Outcome"}, f"The {kind} build is queued"),
                              **_errors(400, 401, 503)},
            }
        }
    number_list = {"oneOf": [{"type": "string", "example": "3,4,5"}, {"type": "array", "items": {"type": "number"}}]}
    schemas = {
        "ErrorDetail": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string", "example": "wrong_feature_count"}, "message": {"type": "string"}},
        },
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"$ref": "#/components/schemas/ErrorDetail"}}},
        "PredictionRequest": {
            "type": "object",
            "required": ["model", "payload"],
            "additionalProperties": False,
            "properties": {
                "model": {"type": "string", "enum": list(MODEL_KINDS)},
                "payload": number_list,
                "id": {"type": "string", "maxLength": 128},
                "dataset": {"type": "string", "default": "default"},
                "version": {"type": "integer", "minimum": 1},
            },
        },
        "Prediction": {
            "type": "object",
            "required": ["id", "model", "dataset", "version", "input", "result", "accuracy", "modelid", "prediction-date"],
            "properties": {
                "id": {"type": "string"},
                "model": {"type": "string"},
                "dataset": {"type": "string"},
                "version": {"type": "integer"},
                "input": {"type": "string"},
                "result": {"type": "number"},
                "accuracy": {"type": "number", "description": "Main metric of the version (accuracy for mlp, R² otherwise)"},
                "modelid": {"type": "string", "format": "uuid"},
                "prediction-date": {"type": "string", "example": "2026-11-23 10:00:00"},
                "probabilities": {"type": "array", "items": {"type": "number"}, "description": "mlp only, in class order"},
                "label": {"type": "string", "description": "Label name, when the dataset declares labels"},
            },
        },
        "PredictionError": {
            "type": "object",
            "required": ["id", "error"],
            "properties": {"id": {"type": "string", "nullable": True}, "error": {"$ref": "#/components/schemas/ErrorDetail"}},
        },
        "Event": {
            "type": "object",
            "required": ["type", "payload"],
            "properties": {
                "type": {"type": "string", "enum": ["training", "command"]},
                "payload": {"oneOf": [number_list, {"type": "string", "enum": [*BUILD_COMMANDS, "promote"]}]},
                "id": {"type": "string", "maxLength": 128},
                "dataset": {"type": "string"},
                "params": {"type": "object"},
                "model": {"type": "string"},
                "version": {"type": "integer"},
                "ts": {"oneOf": [{"type": "number"}, {"type": "string"}]},
            },
        },
        "Outcome": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {"type": "string", "enum": ["accepted", "duplicate", "queued", "rejected"]},
                "id": {"type": "string"},
                "position": {"type": "integer"},
                "error": {"$ref": "#/components/schemas/ErrorDetail"},
            },
        },
        "EventPage": {
            "type": "object",
            "properties": {"events": {"type": "array", "items": {"type": "object"}},
                           "next": {"type": "integer", "nullable": True, "description": "`after` of the next page; null at the end"},
                           "head": {"type": "integer"}},
        },
        "VerifyState": {
            "type": "object",
            "required": ["state"],
            "properties": {
                "state": {"type": "string", "enum": ["never", "queued", "running", "ok", "mismatch", "failed"]},
                "differences": {"type": "array", "items": {"type": "string"}},
                "notes": {"type": "array", "items": {"type": "string"}},
                "error": {"type": "string"},
                "requested_at": {"type": "string"}, "started_at": {"type": "string"},
                "finished_at": {"type": "string"}, "seconds": {"type": "number"},
            },
        },
        "ErrorPage": {
            "type": "object",
            "properties": {"errors": {"type": "array", "items": {"type": "object"}},
                           "next": {"type": "integer", "nullable": True},
                           "total": {"type": "integer"}},
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "modelbus",
            "version": "0.1.0",
            "description": "Event-sourced command bus for ML models: post events, build models, get predictions. "
                           "Every error is JSON {\"error\": {\"code\", \"message\"}}.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "Needed by write routes when MODELBUS_API_TOKEN is set"}},
        },
    }
