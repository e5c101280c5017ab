"""The pure prediction layer: model cache, hot swap, batching and the response contract."""
from __future__ import annotations

import json
import threading
from datetime import datetime, timezone

import numpy as np
import pytest

from modelbus.builders import get_builder
from modelbus.handlers.serving.predict import Item, parse_item, parse_item_obj, predict_batch, resolve
from modelbus.handlers.serving.batcher import MicroBatcher
from modelbus.handlers.serving.cache import ModelCache
from serving_support import FakeRegistry

SEED_KEYS = {"input", "result", "accuracy", "modelid", "prediction-date"}


def items(*objs) -> list[Item]:
    return [parse_item(o if isinstance(o, bytes) else json.dumps(o).encode()) for o in objs]


@pytest.fixture
def registry() -> FakeRegistry:
    reg = FakeRegistry()
    reg.add("mlp")
    reg.add("slr")
    reg.add("linear")
    return reg


@pytest.fixture
def cache(registry) -> ModelCache:
    return ModelCache(registry)


def direct(mv, rows):
    model = get_builder(mv.model).load(mv.artifact)
    X = np.asarray(rows, dtype=np.float64)
    return model.predict(X), model.predict_proba(X)


def test_mlp_response_has_the_seed_keys_and_the_new_ones(registry, cache):
    now = datetime(2026, 11, 23, 10, 0, 0, tzinfo=timezone.utc)
    [answer] = predict_batch(cache, items({"model": "mlp", "payload": "3,4,5", "id": "r1"}), now=now)
    mv = registry.production("mlp", "default")
    result, proba = direct(mv, [[3, 4, 5]])
    assert set(answer) == SEED_KEYS | {"id", "model", "dataset", "version", "probabilities"}
    assert answer["id"] == "r1"
    assert (answer["model"], answer["dataset"], answer["version"]) == ("mlp", "default", 1)
    assert answer["input"] == "3,4,5"
    assert answer["result"] == int(result[0]) and isinstance(answer["result"], int)
    assert answer["accuracy"] == mv.main_metric
    assert answer["modelid"] == mv.uuid
    assert answer["prediction-date"] == "2026-11-23 10:00:00"
    assert answer["probabilities"] == pytest.approx(list(proba[0]))
    assert sum(answer["probabilities"]) == pytest.approx(1.0)
    assert json.loads(json.dumps(answer)) == answer


def test_regressions_answer_floats_without_probabilities(registry, cache):
    answers = predict_batch(cache, items({"model": "slr", "payload": [3, 4, 5]}, {"model": "linear", "payload": "3,4,5"}))
    for answer, kind in zip(answers, ("slr", "linear")):
        mv = registry.production(kind, "default")
        assert "probabilities" not in answer
        assert answer["result"] == pytest.approx(float(direct(mv, [[3, 4, 5]])[0][0]))
        assert answer["accuracy"] == mv.main_metric
        assert answer["id"]  # generated when the request has none
    assert answers[0]["input"] == "3.0,4.0,5.0"


def test_prediction_date_is_utc_now():
    reg = FakeRegistry()
    reg.add("slr")
    [answer] = predict_batch(ModelCache(reg), items({"model": "slr", "payload": "1,2,3"}))
    stamped = datetime.strptime(answer["prediction-date"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
    assert abs((datetime.now(timezone.utc) - stamped).total_seconds()) < 60


class CountingModel:
    def __init__(self, inner):
        self.inner, self.calls, self.n_features = inner, [], inner.n_features

    def predict(self, X):
        self.calls.append(len(X))
        return self.inner.predict(X)

    def predict_proba(self, X):
        return self.inner.predict_proba(X)


def test_one_forward_pass_per_model_per_batch(registry, cache):
    rows = [[i % 10, (i * 3) % 10, (i * 7) % 10] for i in range(50)]
    requests = [{"model": "mlp" if i % 2 else "linear", "payload": r, "id": str(i)} for i, r in enumerate(rows)]
    for kind in ("mlp", "linear"):
        loaded = cache.get(kind, "default")
        object.__setattr__(loaded, "predictor", CountingModel(loaded.predictor))
    answers = predict_batch(cache, items(*requests))
    assert [a["id"] for a in answers] == [str(i) for i in range(50)]
    assert cache.get("mlp", "default").predictor.calls == [25]
    assert cache.get("linear", "default").predictor.calls == [25]
    for kind, parity in (("mlp", 1), ("linear", 0)):
        mv = registry.production(kind, "default")
        mine = [r for i, r in enumerate(rows) if i % 2 == parity]
        expected = direct(mv, mine)[0]
        got = [a["result"] for i, a in enumerate(answers) if i % 2 == parity]
        assert got == pytest.approx(list(expected))


@pytest.mark.parametrize(
    "request_obj,code,fragment",
    [
        ({"model": "tree", "payload": "1,2,3", "id": "e1"}, "unknown_model", "model 'tree' is unknown"),
        ({"model": "mlp", "payload": "1,2,3", "id": "e1", "dataset": "nope"}, "no_production_version",
         "mlp has no production version for dataset 'nope'"),
        ({"model": "mlp", "payload": "1,2,3", "id": "e1", "version": 9}, "unknown_version",
         "mlp has no version 9 for dataset 'default'"),
        ({"model": "mlp", "payload": "1,2", "id": "e1"}, "wrong_feature_count",
         "payload has 2 values; mlp v1 of dataset 'default' expects 3 features"),
        ({"model": "mlp", "payload": "1,x,3", "id": "e1"}, "not_numeric", "payload value 2 'x' is not a number"),
        ({"model": "mlp", "payload": "1,nan,3", "id": "e1"}, "not_finite", "not a finite number"),
        ({"model": "mlp", "id": "e1"}, "missing_field", "'payload' is required"),
        ({"model": "mlp", "payload": "1,2,3", "id": "e1", "colour": 1}, "unknown_field", "unknown field 'colour'"),
    ],
)
def test_bad_requests_get_an_error_with_their_id(cache, request_obj, code, fragment):
    [answer] = predict_batch(cache, items(request_obj))
    assert set(answer) == {"id", "error"}
    assert answer["id"] == "e1"
    assert answer["error"]["code"] == code
    assert fragment in answer["error"]["message"]


@pytest.mark.parametrize(
    "raw,code",
    [(b"\xff\xfe{}", "not_utf8"), (b"{not json", "not_json"), (b"[1,2]", "not_object"), (b"", "not_json")],
)
def test_unreadable_requests_are_answered_without_id(cache, raw, code):
    [answer] = predict_batch(cache, [parse_item(raw)])
    assert answer == {"id": None, "error": {"code": code, "message": answer["error"]["message"]}}


def test_oversize_request(cache):
    raw = json.dumps({"model": "mlp", "payload": ",".join(["1"] * 400_000), "id": "big"}).encode()
    [answer] = predict_batch(cache, [parse_item(raw)])
    assert (answer["id"], answer["error"]["code"]) == ("big", "too_large")


@pytest.mark.parametrize("raw", [b'{"model":"mlp","payload":[1,NaN,3],"id":"n"}',
                                 b'{"model":"mlp","payload":"1,2,3","id":"n","id":"n"}'])
def test_requests_refused_by_the_strict_decoder_keep_their_id(cache, raw):
    [answer] = predict_batch(cache, [parse_item(raw)])
    assert answer["id"] == "n" and answer["error"]["code"] in ("not_finite", "bad_field")


def test_good_and_bad_rows_in_one_batch_keep_their_order(cache):
    answers = predict_batch(
        cache, items({"model": "mlp", "payload": "1,2,3", "id": "a"}, b"nope", {"model": "mlp", "payload": "1", "id": "c"},
                     {"model": "slr", "payload": "4,5,6", "id": "d"})
    )
    assert [a["id"] for a in answers] == ["a", None, "c", "d"]
    assert ["error" in a for a in answers] == [False, True, True, False]


def test_pinned_version_is_served_beside_production(registry, cache):
    first = registry.production("mlp", "default")
    second = registry.add("mlp", seed=7)
    a, b, c = predict_batch(cache, items({"model": "mlp", "payload": "1,2,3", "version": 1},
                                         {"model": "mlp", "payload": "1,2,3"},
                                         {"model": "mlp", "payload": "1,2,3", "version": 2}))
    assert (a["version"], a["modelid"]) == (1, first.uuid)
    assert (b["version"], b["modelid"]) == (2, second.uuid)
    assert (c["version"], c["modelid"]) == (2, second.uuid)


def test_update_notice_swaps_the_production_model(registry, cache):
    assert cache.get("mlp", "default").version == 1
    registry.add("mlp", seed=7)
    assert cache.get("mlp", "default").version == 1  # cached until told
    cache.on_update("mlp", "default")
    assert cache.get("mlp", "default").version == 2
    assert cache.swaps >= 1


def test_polling_the_alias_generation_finds_moves(registry, cache):
    cache.warm()
    assert {l.model for l in cache.loaded()} == {"mlp", "slr", "linear"}
    reads = registry.reads
    assert cache.refresh() is False
    assert registry.reads == reads  # nothing moved: only the generation was read
    registry.add("slr", seed=8)
    assert cache.refresh() is True
    assert cache.get("slr", "default").version == 2
    registry.promote("slr", "default", 1)
    cache.refresh()
    assert cache.get("slr", "default").version == 1


def test_a_model_appearing_later_is_found(cache, registry):
    [answer] = predict_batch(cache, items({"model": "mlp", "payload": "1,2,3", "dataset": "late"}))
    assert answer["error"]["code"] == "no_production_version"
    registry.add("mlp", "late")
    cache.refresh()
    [answer] = predict_batch(cache, items({"model": "mlp", "payload": "1,2,3", "dataset": "late"}))
    assert answer["version"] == 1


def test_aliases_reset_by_a_replay_keep_the_loaded_version_serving(registry, cache):
    cache.warm()
    with registry._lock:  # what `modelbus replay` does to the registry before rebuilding it
        registry.alias.clear()
        registry.generation += 1
    cache.refresh()
    [answer] = predict_batch(cache, items({"model": "mlp", "payload": "1,2,3"}))
    assert answer["version"] == 1
    registry.add("mlp", seed=9)  # the replayed history promotes again
    cache.refresh()
    assert cache.get("mlp", "default").version == 2


def test_a_version_that_fails_to_load_keeps_the_old_one_serving(registry, cache):
    assert cache.get("linear", "default").version == 1
    registry.add("linear", artifact_bytes=b"garbage")
    cache.on_update("linear", "default")
    assert cache.get("linear", "default").version == 1
    [answer] = predict_batch(cache, items({"model": "linear", "payload": "1,2,3", "version": 2}))
    assert answer["error"]["code"] == "model_unavailable"


def test_no_request_fails_while_versions_swap(registry, cache):
    stop = threading.Event()
    failures: list[dict] = []
    versions: set[int] = set()

    def client():
        while not stop.is_set():
            for answer in predict_batch(cache, items(*[{"model": "mlp", "payload": "3,4,5"}] * 5)):
                if "error" in answer:
                    failures.append(answer)
                else:
                    versions.add(answer["version"])

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    for seed in (7, 8, 9):
        registry.add("mlp", seed=seed)
        cache.on_update("mlp", "default")
    stop.set()
    for t in threads:
        t.join()
    assert failures == []
    assert cache.get("mlp", "default").version == 4
    assert versions and versions <= {1, 2, 3, 4}


def test_dataset_label_names_are_added():
    reg = FakeRegistry()
    reg.add("mlp")
    cache = ModelCache(reg)
    [answer] = predict_batch(cache, items({"model": "mlp", "payload": "3,4,5"}),
                             labels={"default": {str(c): f"score {int(c)}" for c in range(11)}})
    assert answer["label"] == f"score {answer['result']}"


def test_parse_item_obj_matches_parse_item():
    obj = {"model": "mlp", "payload": [1, 2, 3], "id": "x"}
    assert parse_item_obj(obj).request == parse_item(json.dumps(obj)).request
    bad = {"model": "mlp", "payload": "1,a", "id": "x"}
    assert parse_item_obj(bad).error.as_dict() == parse_item(json.dumps(bad)).error.as_dict()


def test_micro_batcher_answers_each_caller_in_order(cache):
    sizes: list[int] = []

    def run(batch):
        sizes.append(len(batch))
        if len(sizes) == 1:
            # Hold the first batch until every other caller has queued, so they share the next one.
            while len(batcher._pending) * 3 + sizes[0] < 36:
                threading.Event().wait(0.01)
        return predict_batch(cache, batch)

    batcher = MicroBatcher(run, max_batch=64, max_wait=0.05)
    results: dict[int, list[dict]] = {}

    def caller(n):
        mine = items(*[{"model": "slr", "payload": [n, 1, 1], "id": f"{n}-{k}"} for k in range(3)])
        results[n] = batcher.submit(mine)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()
    for n, answers in results.items():
        assert [a["id"] for a in answers] == [f"{n}-{k}" for k in range(3)]
        assert all(a["input"] == f"{float(n)},1.0,1.0" for a in answers)
    assert sum(sizes) == 36
    assert len(sizes) <= 2  # the callers queued behind the first batch shared one forward pass
    assert sizes[0] == 3 and batcher.inline == 1  # the first caller found the batcher idle and ran its own


def test_micro_batcher_runs_a_lone_caller_in_its_own_thread(cache):
    threads: list[str] = []

    def run(batch):
        threads.append(threading.current_thread().name)
        return predict_batch(cache, batch)

    batcher = MicroBatcher(run)
    for n in range(3):
        [answer] = batcher.submit(items({"model": "slr", "payload": [n, 1, 1], "id": str(n)}))
        assert answer["id"] == str(n) and "error" not in answer
    assert threads == [threading.current_thread().name] * 3
    assert batcher._thread is None  # no batching thread was needed
    batcher.close()


def test_micro_batcher_reports_a_failing_batch_to_its_callers():
    def run(batch):
        raise RuntimeError("boom")

    batcher = MicroBatcher(run)
    with pytest.raises(RuntimeError, match="boom"):
        batcher.submit(items({"model": "mlp", "payload": "1,2,3"}))
    assert batcher.submit([]) == []
    batcher.close()


class BrokenRegistry(FakeRegistry):
    def production(self, model, dataset):
        raise ConnectionError("database is down")


def test_an_unreadable_registry_is_an_answer_not_a_crash():
    [answer] = predict_batch(ModelCache(BrokenRegistry()), items({"model": "mlp", "payload": "1,2,3", "id": "x"}))
    assert answer["id"] == "x" and answer["error"]["code"] == "registry_unavailable"
    assert "ConnectionError" in answer["error"]["message"]


def test_a_model_update_during_a_database_outage_keeps_the_loaded_version(registry, cache, monkeypatch):
    """Every serving process reloads on a notice at once: a database blip then must not stop them."""
    from modelbus.db.errors import LostConnection
    from modelbus.handlers.serving.reload import apply_update

    cache.warm()

    def down(*_args):
        raise LostConnection("MySQL server has gone away", error="OperationalError", code="2006")

    monkeypatch.setattr(registry, "production", down)
    assert apply_update(cache, b'{"model":"mlp","dataset":"default","version":2}') is False
    [answer] = predict_batch(cache, items({"model": "mlp", "payload": "1,2,3"}))
    assert answer["version"] == 1


def test_requests_naming_many_unknown_datasets_do_not_grow_the_cache(registry, cache):
    """Dataset names come from unauthenticated requests: the 'no model here' memory is bounded."""
    from modelbus.handlers.serving.cache import MISSING_CACHE_SIZE

    cache.warm()
    for i in range(MISSING_CACHE_SIZE + 500):
        [answer] = predict_batch(cache, items({"model": "mlp", "payload": "1,2,3", "dataset": f"d{i}"}))
        assert answer["error"]["code"] == "no_production_version"
    assert len(cache._missing) == MISSING_CACHE_SIZE
    assert {key for key in cache._production} == {("mlp", "default"), ("slr", "default"), ("linear", "default")}
    reads = registry.reads
    predict_batch(cache, items({"model": "mlp", "payload": "1,2,3", "dataset": f"d{MISSING_CACHE_SIZE + 499}"}))
    assert registry.reads == reads  # a recent miss is answered from memory


def test_items_resolved_beforehand_never_read_the_registry_in_the_batch(registry, cache):
    """The HTTP API resolves in each caller's thread, so the shared batch thread never waits on the database."""
    cache.warm()
    batch = items({"model": "mlp", "payload": "1,2,3", "id": "loaded"},
                  {"model": "mlp", "payload": "1,2,3", "dataset": "elsewhere"},
                  {"model": "linear", "payload": "1,2", "id": "short"},
                  b"{nope")
    for item in batch:
        resolve(cache, item)
    assert batch[0].resolved is cache.get("mlp", "default")
    assert batch[1].resolved.code == "no_production_version"
    assert batch[2].resolved.code == "wrong_feature_count"
    assert batch[3].resolved is None  # unparsed: answered with its parse error
    reads = registry.reads
    answers = predict_batch(cache, batch)
    assert registry.reads == reads
    assert answers[0]["version"] == 1
    # An id-less request still gets a generated id with its error.
    assert answers[1]["error"]["code"] == "no_production_version" and len(answers[1]["id"]) == 32
    assert [a.get("error", {}).get("code") for a in answers[2:]] == ["wrong_feature_count", "not_json"]


def test_a_miss_waiting_on_the_registry_holds_up_no_other_caller(registry, cache):
    """Serving.predict's order: resolve (may wait on the database), then the shared batcher."""
    cache.warm()
    release = threading.Event()
    slow = registry.production

    def frozen(model, dataset):
        if dataset == "elsewhere":
            release.wait(10)
        return slow(model, dataset)

    registry.production = frozen
    batcher = MicroBatcher(lambda batch: predict_batch(cache, batch))

    def predict(obj):
        batch = items(obj)
        for item in batch:
            resolve(cache, item)
        return batcher.submit(batch)

    waiting = threading.Thread(target=predict, args=({"model": "slr", "payload": "1,2,3", "dataset": "elsewhere"},))
    waiting.start()
    try:
        [answer] = predict({"model": "mlp", "payload": "1,2,3", "id": "meanwhile"})
        assert answer["id"] == "meanwhile" and answer["version"] == 1
        assert waiting.is_alive()
    finally:
        release.set()
        waiting.join(10)
        batcher.close()


class UnavailableRegistry(FakeRegistry):
    def alias_generation(self):
        from modelbus.db.breaker import DatabaseUnavailable

        raise DatabaseUnavailable("the database is known not to answer")


def test_polling_while_the_breaker_refuses_is_quiet_and_keeps_serving():
    registry = UnavailableRegistry()
    registry.add("mlp")
    cache = ModelCache(registry)
    cache.get("mlp", "default")
    assert cache.refresh() is False
    assert [loaded.version for loaded in cache.loaded()] == [1]
