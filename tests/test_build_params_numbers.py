"""Huge or odd numbers in build params: a parse rejection or a failed build, never a stuck handler."""
from __future__ import annotations

from modelbus.db import registry
from modelbus.db.events import Source
from modelbus.handlers.workers.ingest import incoming
from tests.registry_support import class_rows, run_builds, send_rows


def test_huge_numbers_in_params_are_rejected_or_fail_their_build(store):
    send_rows(store, class_rows(40, seed=3))
    small = '"epochs":3,"hidden":[4]'
    raws = [
        # Beyond int64: the parser refuses them, so they never reach the log.
        b'{"type":"command","payload":"build_mlp","params":{"seed":18446744073709551616}}',
        b'{"type":"command","payload":"build_mlp","params":{"epochs":' + b"9" * 400 + b"}}",
        # Numbers JSON and the store hold, but the builder cannot use: failed builds with their reason.
        b'{"type":"command","payload":"build_mlp","params":{"epochs":1e308}}',
        b'{"type":"command","payload":"build_mlp","params":{"hidden":[99999999999]}}',
        b'{"type":"command","payload":"build_mlp","params":{"batch_size":9223372036854775807}}',
        b'{"type":"command","payload":"build_slr","params":{"seed":-1}}',
        # Accepted by the params' checks, then training overflows.
        b'{"type":"command","payload":"build_mlp","params":{' + small.encode() + b',"lr":1e308}}',
        b'{"type":"command","payload":"build_mlp","params":{' + small.encode() + b',"weight_decay":1e308}}',
        b'{"type":"command","payload":"build_mlp","params":{' + small.encode() + b"}}",
    ]
    outcomes = store.append([incoming(raw, Source("test"), 64 * 1024) for raw in raws])
    assert [o.status for o in outcomes[:2]] == ["rejected", "rejected"]
    assert [o.error.code for o in outcomes[:2]] == ["out_of_range", "out_of_range"]
    assert "field 'params.seed' is 18446744073709551616" in outcomes[0].error.message
    positions = [o.position for o in outcomes[2:]]
    assert all(positions)

    run_builds(store)
    attempts = {b["position"]: b for b in registry.builds(store.engine)}
    reasons = [attempts[p]["reason"] for p in positions[:-1]]
    assert all(attempts[p]["status"] == "failed" and attempts[p]["version"] is None for p in positions[:-1])
    assert "params.epochs must be an integer between 1 and 100000, got 1e+308" in reasons[0]
    assert "params.hidden must be a list" in reasons[1] and "99999999999" in reasons[1]
    assert "params.batch_size" in reasons[2] and "params.seed" in reasons[3]
    assert reasons[4] and reasons[5]
    # The handler went on: the build after them made a version.
    assert attempts[positions[-1]]["status"] == "ok"
    assert [(mv.model, mv.version) for mv in registry.list_versions(store.engine)] == [("mlp", 1)]
