"""The one validator: every seed format accepted, every bad input rejected with its own reason."""
from __future__ import annotations

import json

import pytest

from modelbus.messages.types import Command, Training
from modelbus.messages.errors import Rejected
from modelbus.messages.jsonutil import canonical_json
from modelbus.messages.parse import (
    check_feature_count,
    loads,
    parse_event,
    parse_event_obj,
    parse_request,
    parse_values,
)


def rejected(fn, *args) -> Rejected:
    with pytest.raises(Rejected) as info:
        fn(*args)
    return info.value


def test_seed_training_event_exactly_as_the_seed_wrote_it():
    event = parse_event(b'{"type":"training","payload":"3,4,5,6"}')
    assert isinstance(event, Training)
    assert event.dataset == "default"
    assert event.features == (3.0, 4.0, 5.0)
    assert event.label == 6.0
    assert event.values == 4


@pytest.mark.parametrize("name,kind", [("build_mlp", "mlp"), ("build_slr", "slr"), ("build_linear", "linear")])
def test_seed_build_commands(name, kind):
    event = parse_event(json.dumps({"type": "command", "payload": name}))
    assert isinstance(event, Command)
    assert event.kind == kind
    assert event.params is None


def test_optional_fields_are_kept_in_the_stored_body():
    raw = {"type": "command", "payload": "build_mlp", "id": "b-1", "dataset": "judges", "ts": "2026-11-23T10:00:00Z",
           "params": {"hidden": [32, 32], "epochs": 300}}
    event = parse_event_obj(raw)
    assert event.dataset == "judges"
    assert event.params == {"hidden": [32, 32], "epochs": 300}
    assert json.loads(canonical_json(event.body)) == raw


def test_dataset_defaults_into_the_body():
    event = parse_event_obj({"type": "training", "payload": [1, 2.5, 3]})
    assert event.body["dataset"] == "default"
    assert event.features == (1.0, 2.5)


def test_promote_needs_model_and_version():
    event = parse_event_obj({"type": "command", "payload": "promote", "model": "mlp", "version": 3})
    assert (event.model, event.version, event.kind) == ("mlp", 3, None)
    assert rejected(parse_event_obj, {"type": "command", "payload": "promote", "model": "mlp"}).code == "missing_field"
    assert rejected(parse_event_obj, {"type": "command", "payload": "promote", "version": 1}).code == "missing_field"


@pytest.mark.parametrize(
    "raw,code,fragment",
    [
        (b"\xff\xfe{}", "not_utf8", "not UTF-8"),
        (b"{not json", "not_json", "not JSON"),
        (b"", "not_json", "not JSON"),
        (b"[1,2,3]", "not_object", "got array"),
        (b'"training"', "not_object", "got string"),
        (b"null", "not_object", "got null"),
        (b'{"payload":"1,2"}', "missing_field", "'type' is required"),
        (b'{"type":"training"}', "missing_field", "'payload' is required"),
        (b'{"type":"command"}', "missing_field", "'payload' is required"),
        (b'{"type":"telemetry","payload":"1"}', "unknown_type", "type 'telemetry' is unknown"),
        (b'{"type":"command","payload":"build_tree"}', "unknown_command", "command 'build_tree' is unknown"),
        (b'{"type":"training","payload":"1,two,3"}', "not_numeric", "payload value 2 'two' is not a number"),
        (b'{"type":"training","payload":[1,"x",3]}', "not_numeric", "payload value 2 'x'"),
        (b'{"type":"training","payload":[1,true,3]}', "not_numeric", "payload value 2 is boolean"),
        (b'{"type":"training","payload":"1,1_000,3"}', "not_numeric", "'1_000' is not a number"),
        (b'{"type":"training","payload":"1,NaN,3"}', "not_finite", "'NaN' is not a finite number"),
        (b'{"type":"training","payload":"1,inf,3"}', "not_finite", "'inf' is not a finite number"),
        (b'{"type":"training","payload":[1,NaN,3]}', "not_finite", "NaN is not a finite number"),
        (b'{"type":"training","payload":[1,Infinity]}', "not_finite", "Infinity is not a finite number"),
        (b'{"type":"training","payload":[1,1e999]}', "not_finite", "not a finite number"),
        (b'{"type":"training","payload":"5"}', "bad_field", "needs features and a label"),
        (b'{"type":"training","payload":""}', "bad_field", "payload is empty"),
        (b'{"type":"training","payload":7}', "bad_field", "CSV string or an array"),
        (b'{"type":"training","payload":{"a":[1]}}', "bad_field", "payload.a: expected a single value, got array"),
        (b'{"type":"training","payload":"1,2","extra":1}', "unknown_field", "unknown field 'extra'"),
        (b'{"type":"training","payload":"1,2","type":"command"}', "bad_field", "appears twice"),
        (b'{"type":"training","payload":"1,2","id":5}', "bad_field", "'id' must be a string"),
        (b'{"type":"training","payload":"1,2","dataset":"a b"}', "bad_field", "dataset 'a b' must be"),
        (b'{"type":"command","payload":"build_mlp","params":[1]}', "bad_field", "'params' must be an object"),
        (b'{"type":"command","payload":"promote","model":"tree","version":1}', "unknown_model", "model 'tree'"),
        (b'{"type":"command","payload":"promote","model":"mlp","version":0}', "bad_field", "positive integer"),
    ],
)
def test_bad_events_each_get_their_own_reason(raw, code, fragment):
    error = rejected(parse_event, raw)
    assert error.code == code
    assert fragment in error.message
    assert error.as_dict() == {"code": code, "message": error.message}


def test_id_longer_than_128_characters():
    error = rejected(parse_event_obj, {"type": "training", "payload": "1,2", "id": "x" * 129})
    assert (error.code, error.message) == ("bad_field", "field 'id' must have 1 to 128 characters, got 129")


def test_oversize_message_is_rejected_before_parsing():
    raw = json.dumps({"type": "training", "payload": ",".join(["1"] * 400_000)}).encode()
    assert len(raw) > 700_000
    error = rejected(parse_event, raw)
    assert error.code == "too_large"
    assert error.message == f"message is {len(raw)} bytes; the limit is 65536"


def test_limit_is_configurable():
    assert loads(b'{"a":1}', max_bytes=7) == {"a": 1}
    assert rejected(loads, b'{"a":10}', 7).code == "too_large"


def test_wrong_feature_count_names_the_dataset():
    event = parse_event(b'{"type":"training","payload":"3,4,5"}')
    check_feature_count(event, 3)
    check_feature_count(event, None)
    error = rejected(check_feature_count, event, 4)
    assert (error.code, error.message) == ("wrong_feature_count", "payload has 3 values; dataset 'default' expects 4")


def test_values_accept_json_and_csv_numbers_only():
    assert parse_values(" 1, -2.5 ,3e2,.5") == (1.0, -2.5, 300.0, 0.5)
    assert parse_values([1, 2.5, "3"]) == (1.0, 2.5, 3.0)
    assert rejected(parse_values, "0x10").code == "not_numeric"
    assert rejected(parse_values, "1,,2").code == "not_numeric"


def test_seed_prediction_request():
    request = parse_request(b'{"model":"slr","payload":"3,4,5"}')
    assert (request.model, request.dataset, request.features, request.payload) == ("slr", "default", (3.0, 4.0, 5.0), "3,4,5")
    assert request.id is None and request.version is None


def test_prediction_request_options():
    request = parse_request(b'{"model":"mlp","payload":[3,4,5],"id":"r1","dataset":"d","version":2}')
    assert (request.id, request.dataset, request.version) == ("r1", "d", 2)


@pytest.mark.parametrize(
    "raw,code",
    [
        (b"\xc3\x28", "not_utf8"),
        (b"nope", "not_json"),
        (b"[]", "not_object"),
        (b'{"payload":"1,2"}', "missing_field"),
        (b'{"model":"mlp"}', "missing_field"),
        (b'{"model":"tree","payload":"1,2"}', "unknown_model"),
        (b'{"model":"mlp","payload":"1,a"}', "not_numeric"),
        (b'{"model":"mlp","payload":"1,nan"}', "not_finite"),
        (b'{"model":"mlp","payload":"1","type":"x"}', "unknown_field"),
        (b'{"model":"mlp","payload":"1","version":"2"}', "bad_field"),
    ],
)
def test_bad_prediction_requests(raw, code):
    assert rejected(parse_request, raw).code == code


@pytest.mark.parametrize(
    "raw",
    [
        rb'{"type":"training","payload":"1,2","id":"\ud800"}',
        rb'{"type":"training","payload":"1,2","id":"ok\uDFFFok"}',
        rb'{"type":"command","payload":"build_mlp","params":{"\udc00":1}}',
    ],
)
def test_a_lone_surrogate_is_not_unicode(raw):
    error = rejected(parse_event, raw)
    assert error.code == "not_utf8"
    assert "lone surrogate" in error.message


def test_an_escaped_surrogate_pair_is_a_character():
    event = parse_event(rb'{"type":"training","payload":"1,2","id":"\ud83d\ude80"}')
    assert event.body["id"] == "\U0001F680"
    assert rejected(parse_request, rb'{"model":"mlp","payload":"1","id":"\ud800"}').code == "not_utf8"


@pytest.mark.parametrize("ident", ["x ", " x", "x\t"])
def test_an_id_with_outer_whitespace_is_refused(ident):
    # MySQL's PAD SPACE collation would make "x " collide with "x" and stall ingest.
    error = rejected(parse_event_obj, {"type": "training", "payload": "1,2", "id": ident})
    assert (error.code, error.message) == ("bad_field", "field 'id' must not begin or end with whitespace")


def test_ids_reserved_for_modelbus_are_refused_from_clients_only():
    body = {"type": "command", "payload": "promote", "model": "mlp", "version": 1, "id": "auto-promote:mlp:default:1"}
    error = rejected(parse_event_obj, dict(body))
    assert error.code == "bad_field" and "reserved" in error.message
    assert parse_event_obj(dict(body), system=True).version == 1


BIG = "1" * 400


@pytest.mark.parametrize(
    "raw,fragment",
    [
        (f'{{"type":"training","payload":[1,2,{BIG},4]}}', "payload value 3 is 111111111111...1111 (400 characters)"),
        (f'{{"type":"training","payload":"1,2,{BIG},4"}}', "payload value 3 is 111111111111...1111 (400 characters)"),
        # Beyond Python's 4300-digit limit for int(): refused by length, never converted.
        ('{"type":"training","payload":[1,' + "9" * 5000 + "]}", "payload value 2 is 999999999999...9999 (5000 characters)"),
        ('{"type":"training","payload":[1,9223372036854775808]}', "payload value 2 is 9223372036854775808"),
        ('{"type":"training","payload":[1,-9223372036854775809]}', "payload value 2 is -9223372036854775809"),
        ('{"type":"training","payload":"1, 99999999999999999999 "}', "payload value 2 is 99999999999999999999"),
        ('{"type":"command","payload":"promote","model":"mlp","version":2147483648}', "'version' must be at most 2147483647"),
        ('{"type":"command","payload":"promote","model":"mlp","version":99999999999999999999}', "field 'version' is 9999"),
        ('{"type":"training","payload":"1,2","ts":18446744073709551616}', "field 'ts' is 18446744073709551616"),
        ('{"type":"command","payload":"build_mlp","params":{"hidden":[8,' + BIG + "]}}", "field 'params.hidden[1]'"),
        ('{"type":"command","payload":"build_mlp","id":"x","params":{"a":{"b":1e99999999999999999999}}}', "not a finite"),
    ],
)
def test_numbers_beyond_what_the_store_holds_are_out_of_range(raw, fragment):
    error = rejected(parse_event, raw.encode())
    assert error.code == ("not_finite" if "1e9999" in raw else "out_of_range")
    assert fragment in error.message
    assert len(error.message) < 200


def test_the_edges_of_int64_and_of_version_are_accepted():
    event = parse_event(b'{"type":"training","payload":[9223372036854775807,-9223372036854775808],"ts":-9223372036854775808}')
    assert event.features == (float(2**63 - 1),) and event.label == float(-(2**63))
    assert parse_event(b'{"type":"training","payload":"9223372036854775807,1"}').features == (float(2**63 - 1),)
    promote = parse_event(b'{"type":"command","payload":"promote","model":"mlp","version":2147483647}')
    assert promote.version == 2**31 - 1
    assert parse_request(b'{"model":"mlp","payload":"1","version":2147483647}').version == 2**31 - 1


def test_a_prediction_request_gets_the_same_codes():
    assert rejected(parse_request, f'{{"model":"mlp","payload":[1,{BIG}]}}'.encode()).code == "out_of_range"
    assert rejected(parse_request, f'{{"model":"mlp","payload":"1,{BIG}"}}'.encode()).code == "out_of_range"
    error = rejected(parse_request, b'{"model":"mlp","payload":"1","version":4294967296}')
    assert (error.code, error.message) == ("out_of_range", "field 'version' must be at most 2147483647, got 4294967296")


def test_an_object_built_in_python_gets_the_error_its_bytes_would():
    as_bytes = rejected(parse_event, f'{{"type":"training","payload":[1,2,{BIG},4]}}'.encode())
    as_object = rejected(parse_event_obj, {"type": "training", "payload": [1, 2, int(BIG), 4]})
    assert as_object.as_dict() == as_bytes.as_dict()
    huge = rejected(parse_event_obj, {"type": "training", "payload": [1, 10**5000]})
    assert huge.code == "out_of_range" and "about 5000 digits" in huge.message
    cases = [
        ({"type": "training", "payload": "1,2", "ts": float("nan")}, "not_finite", "field 'ts' nan"),
        ({"type": "training", "payload": "1,2", "ts": 2**64}, "out_of_range", "field 'ts' is 18446744073709551616"),
        ({"type": "command", "payload": "build_mlp", "params": {"lr": float("inf")}}, "not_finite", "params.lr"),
        ({"type": "command", "payload": "build_mlp", "params": {"x": [1, -(2**70)]}}, "out_of_range", "params.x[1]"),
        ({"type": "command", "payload": "promote", "model": "mlp", "version": 2**31}, "out_of_range", "at most"),
        ({"type": "command", "payload": "promote", "model": "mlp", "version": -(10**5000)}, "bad_field", "positive"),
    ]
    for obj, code, fragment in cases:
        error = rejected(parse_event_obj, obj)
        assert (error.code, fragment in error.message) == (code, True), error.message


def test_the_field_is_named_wherever_the_integer_is():
    error = rejected(loads, f'[{{"a":1}},{{"b":[1,{BIG}]}}]'.encode())
    assert (error.code, error.message[:17]) == ("out_of_range", "field '[1].b[1]' ")
    # The strict decoder stops at the integer; the rest need not even be JSON.
    assert rejected(loads, f'{{"a":{BIG}, oops'.encode()).message.startswith("a number in the message is 1111")
    assert rejected(loads, BIG.encode()).message.startswith("the message is 1111")
    assert rejected(loads, f'{{"a":{BIG},"a":1}}'.encode()).message.startswith("field 'a' is 1111")


def test_huge_params_a_builder_cannot_use_are_left_to_the_builder():
    # Within int64 and finite: the parser accepts them; the builder's checks fail the build.
    event = parse_event(b'{"type":"command","payload":"build_mlp","params":{"epochs":1e308,"hidden":[99999999999]}}')
    assert event.params == {"epochs": 1e308, "hidden": [99999999999]}


def test_csv_fast_path_agrees_with_the_value_by_value_rules():
    assert parse_values(" 1 ,\t-2.5e3, .5 ,7.") == (1.0, -2500.0, 0.5, 7.0)
    assert parse_values("1e17,-1e17") == (1e17, -1e17)
    assert parse_values("1e300,5") == (1e300, 5.0)  # a float, not an integer literal: no int64 bound
    assert rejected(parse_values, "1,2,1e400").code == "not_finite"
    assert rejected(parse_values, "1,-1e400").code == "not_finite"
    assert rejected(parse_values, "1," + "9," * 10_000).message == "payload has 10002 values; the limit is 10000"
    assert len(parse_values("9," * 9_999 + "9")) == 10_000
    assert rejected(parse_values, "1,2,x" + "9" * 100).message == "payload value 3 'x99999999999...9999 (101 characters)' is not a number"


def test_stored_events_are_re_read_with_the_ranges_they_were_accepted_with():
    # Logs written before the int64 rule may hold such values; replay must still read them.
    stored = {"type": "training", "payload": [1, 2**64], "ts": 2**70}
    assert rejected(parse_event_obj, dict(stored)).code == "out_of_range"
    assert parse_event_obj(dict(stored), system=True).label == float(2**64)
    assert parse_event_obj({"type": "training", "payload": "1,18446744073709551616"}, system=True).label == 2.0**64
    params = {"type": "command", "payload": "build_mlp", "params": {"seed": 2**64}}
    assert parse_event_obj(dict(params), system=True).params == {"seed": 2**64}
    # A version beyond the registry's INT columns is refused even there: no handler could apply it.
    promote = {"type": "command", "payload": "promote", "model": "mlp", "version": 2**31}
    with pytest.raises(Rejected, match="must be at most 2147483647"):
        parse_event_obj(promote, system=True)
    with pytest.raises(Rejected) as info:
        parse_event_obj({"type": "training", "payload": [1, 10**400]}, system=True)
    too_big = info.value
    assert (too_big.code, "too large for a float" in too_big.message) == ("out_of_range", True)


@pytest.mark.parametrize("raw", [rb'{"\ud800":1,"\ud800":2}', rb'{"\udfff":99999999999999999999}'])
def test_a_key_in_an_error_message_is_storable_text(raw):
    # The reason is stored with the dead letter: a lone surrogate in it would fail that insert.
    error = rejected(loads, raw)
    assert "\\ud" in error.message
    error.message.encode("utf-8")


# -- the fast decoder agrees with the strict one ------------------------------------------------

from hypothesis import HealthCheck, example, given, settings, strategies as st  # noqa: E402

from modelbus.messages.decode import strict_loads  # noqa: E402

_KEYS = st.sampled_from(["a", "b", "type", "payload", "x:y", "\\u003a", "\\ud800", "\\u0041", "\\\"q"])
_SCALARS = st.one_of(
    st.integers(-10, 10).map(str),
    st.sampled_from(["9223372036854775807", "9223372036854775808", "-9223372036854775809", "18446744073709551616",
                     "1e400", "NaN", "-0", "1.5", "1234567890123456789", "0.1e-400", "true", "null"]),
    st.sampled_from(['"3,4,5"', '"10:00:00"', '":x"', '"a\\":"', '"\\u003a"', '"\\ud800"', '"\\ud83d\\ude80"', '""']),
)
_SPACE = st.sampled_from(["", "", "", " ", "\n", "\t", "\r\n "])


@st.composite
def _json_text(draw, depth: int = 0) -> str:
    """JSON-ish text with repeated keys, spaced colons, escapes and numbers beyond int64 or double."""
    kind = draw(st.integers(0, 2)) if depth < 3 else 0
    if kind == 0:
        return draw(_SCALARS)
    if kind == 1:
        items = draw(st.lists(_json_text(depth + 1), max_size=4))
        return "[" + ",".join(items) + "]"
    pairs = draw(st.lists(st.tuples(_KEYS, _json_text(depth + 1)), max_size=4))
    return "{" + ",".join(f'{draw(_SPACE)}"{key}"{draw(_SPACE)}:{draw(_SPACE)}{value}' for key, value in pairs) + "}"


def _outcome(fn, raw):
    try:
        return ("ok", repr(fn(raw)))
    except Rejected as exc:
        return ("rejected", exc.code, exc.message)


@settings(max_examples=400, suppress_health_check=list(HealthCheck), deadline=None, derandomize=True)
@given(_json_text())
@example('{"a":1,"a" :2}')
@example('{"a":":","a":2}')
@example('{"a":{"b":1},"c":{"b":1,"b":2}}')
@example('{"a":18446744073709551615}')
def test_the_fast_decoder_gives_what_the_strict_one_gives(text):
    """orjson plus the byte counts must accept exactly what the strict decoder accepts, with the same values."""
    raw = text.encode()
    assert _outcome(loads, raw) == _outcome(strict_loads, raw)


# -- rules the declarations made exact ---------------------------------------------------------


def test_a_version_written_as_an_integral_float_is_that_version():
    # JSON Schema calls 2.0 an integer, so the document promises it is accepted.
    assert parse_event_obj({"type": "command", "payload": "promote", "model": "mlp", "version": 2.0}).version == 2
    assert parse_request(b'{"model":"mlp","payload":"1","version":3.0}').version == 3
    error = rejected(parse_request, b'{"model":"mlp","payload":"1","version":2.5}')
    assert (error.code, error.message) == ("bad_field", "field 'version' must be a positive integer, got 2.5")


@pytest.mark.parametrize("payload", ["\u0663,\u0664", "1,\u20032", "\uff11,2"])
def test_numbers_are_ascii(payload):
    # float() reads other scripts' digits and spaces; the document's pattern does not, nor do we.
    assert rejected(parse_values, payload).code == "not_numeric"


def test_a_dataset_name_ends_where_it_ends():
    # A regex's $ also matches before a final newline: "abc\n" was taken as a dataset name.
    error = rejected(parse_event_obj, {"type": "training", "payload": "1,2", "dataset": "abc\n"})
    assert (error.code, error.message[:14]) == ("bad_field", "dataset 'abc\n'")


def _json_dumps_canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)


@given(_JSON_VALUES)
@example([1e-05, 1.5e-05, 0.0001, 1e16, 1e15, 123456789012345680.0, 5e-324, -0.0, 2**63, 2**64])
@example({"é": 1, "😀": 2, "\uffff": 3, "Z": 4, "": 5, "s": "\x00\x1f\u2028\ud800"})
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_canonical_json_is_json_dumps_text_exactly(value):
    # The fast path (orjson) must write byte for byte what json.dumps writes: stored payloads
    # and lineage digests depend on it.
    assert canonical_json(value) == _json_dumps_canonical(value)


@pytest.mark.parametrize("value", [float("nan"), [float("inf")], {"x": float("-inf")}])
def test_canonical_json_refuses_non_finite_floats(value):
    with pytest.raises(ValueError):
        canonical_json(value)


@pytest.mark.parametrize("payload", ["1,2,3,4", " 1.5 , -2e3,0.25,7", "0,99999999999999999999", ".5,1."])
def test_stored_training_values_are_the_strict_parsers(payload):
    from modelbus.messages.parse import stored_training_values

    obj = {"type": "training", "payload": payload, "dataset": "default", "id": "a", "ts": 5}
    event = parse_event_obj(obj, system=True)
    assert stored_training_values(obj, "default") == (*event.features, event.label)


@pytest.mark.parametrize("obj", [
    {"type": "training", "payload": "1,2", "dataset": "other"},  # not the row's dataset
    {"type": "training", "payload": [1, 2], "dataset": "default"},  # an array: the parser's
    {"type": "training", "payload": {"a": 1}, "dataset": "default"},  # typed fields
    {"type": "training", "payload": "1", "dataset": "default"},  # no label
    {"type": "training", "payload": "1,x", "dataset": "default"},
    {"type": "training", "payload": "1,2", "dataset": "default", "extra": 1},
    {"type": "command", "payload": "build_mlp", "dataset": "default"},
])
def test_anything_but_a_plain_stored_record_takes_the_strict_parser(obj):
    from modelbus.messages.parse import stored_training_values

    assert stored_training_values(obj, "default") is None
