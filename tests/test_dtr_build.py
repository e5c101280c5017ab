"""dtr end to end on MariaDB: `modelbus build dtr --wait` on darcey, scikit-learn on the same rows, verify, predict."""
from __future__ import annotations

import json
import os

import numpy as np
from sklearn.tree import DecisionTreeClassifier

from modelbus.builders import train_test_indices
from modelbus.db import registry
from modelbus.db.engine import make_engine
from tests.conftest import DARCEY
from tests.test_cli_models import run


def cli_env(database_url: str) -> dict[str, str]:
    """A clean environment pointing the CLI at `database_url`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MODELBUS_")}
    base["MODELBUS_DATABASE_URL"] = database_url
    base["MODELBUS_LOG_LEVEL"] = "WARNING"
    return base


def test_build_dtr_wait_on_darcey_matches_scikit_learn_and_verifies(mysql_db):
    env = cli_env(mysql_db)
    assert run(env, "send", "--csv", str(DARCEY)).returncode == 0
    built = run(env, "build", "dtr", "--wait", "--timeout", "120")
    assert built.returncode == 0, built.stderr
    assert "dtr version 1 on 'default'" in built.stdout and "from 474 events - now production" in built.stdout
    assert "depth " in built.stdout and "leaves " in built.stdout

    engine = make_engine(mysql_db)
    try:
        mv = registry.get_version(engine, "dtr", "default", 1)
    finally:
        engine.dispose()
    # The same train and test rows as the build: darcey's events sit at log positions 1..474.
    rows = np.loadtxt(DARCEY, delimiter=",")
    X, y = rows[:, :-1], rows[:, -1]
    train, test = train_test_indices(np.arange(1, len(rows) + 1), mv.params["split"], mv.params["seed"])
    default_tree = DecisionTreeClassifier(random_state=mv.params["seed"]).fit(X[train], y[train])
    same_params = DecisionTreeClassifier(random_state=mv.params["seed"], max_depth=mv.params["max_depth"],
                                         min_samples_leaf=mv.params["min_samples_leaf"]).fit(X[train], y[train])
    accuracy = mv.metrics["accuracy"]
    print(f"dtr holdout accuracy {accuracy:.4f}; scikit-learn default tree {default_tree.score(X[test], y[test]):.4f}, "
          f"with the build's params {same_params.score(X[test], y[test]):.4f} on the same {len(test)} rows")
    assert abs(accuracy - default_tree.score(X[test], y[test])) <= 0.03
    assert accuracy == same_params.score(X[test], y[test])
    assert (mv.metrics["depth"], mv.metrics["leaves"]) == (same_params.get_depth(), same_params.get_n_leaves())

    verified = run(env, "verify", "dtr", "1", "--no-progress")
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("OK: dtr version 1 on 'default' rebuilt identically from 474 events")
    assert mv.sha256 in verified.stdout

    answered = run(env, "predict", "dtr", "3,4,5", "9,9,9", "--json")
    assert answered.returncode == 0, answered.stderr
    answers = [json.loads(line) for line in answered.stdout.splitlines()]
    assert [a["result"] for a in answers] == [int(v) for v in same_params.predict([[3, 4, 5], [9, 9, 9]])]
    columns = np.searchsorted(mv.metrics["classes"], same_params.classes_)
    for answer, expected in zip(answers, same_params.predict_proba([[3, 4, 5], [9, 9, 9]])):
        assert np.array_equal(np.asarray(answer["probabilities"])[columns], expected)
        assert answer["version"] == 1 and answer["accuracy"] == accuracy

