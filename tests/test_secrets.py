"""Credentials in tracking and storage URIs never reach what bench prints or records: one rule
(``redact_uri``) for every form (a token as the user, basic auth, a password, secret query
parameters), applied to every URL inside free text (``redact_text``): reasons, warnings, tags,
MLflow's own log lines, the tune storage line, and the ``bench ui`` server's command line."""

from __future__ import annotations

import logging

import pytest

from bench.execution.task import variant_row
from bench.recipe.load import load_recipe
from bench.tracking import mlflow_store as store
from bench.tracking.uris import redact_text, redact_uri
from bench.ui.server import free_port
from tests.recipes import tiny_recipe, write_recipe

SECRETS = ("TOKEN123", "hunter2pw", "s3cretq", "k3yvalue", "t0kval")


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("postgresql://TOKEN123@db.example/mlflow", "postgresql://***@db.example/mlflow"),
        ("http://bob:hunter2pw@mlflow.example:5000", "http://bob:***@mlflow.example:5000"),
        (
            "postgresql://u@h/db?sslmode=require&password=s3cretq",
            "postgresql://***@h/db?sslmode=require&password=***",
        ),
        ("postgresql://h/db?api_key=k3yvalue&token=t0kval", "postgresql://h/db?api_key=***&token=***"),
        ("https://h/x?secret=s3cretq", "https://h/x?secret=***"),
        ("sqlite:////abs/results/mlflow.db", "sqlite:////abs/results/mlflow.db"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ],
)
def test_every_credential_form_is_redacted(uri, shown):
    assert redact_uri(uri) == shown
    text = f"API request to {uri}/api/2.0/runs failed ('{uri}')"
    assert not any(s in redact_text(text) for s in SECRETS)


def test_tune_storage_line_uses_the_same_rule():
    from bench.tune.storage import resolve_storage

    for url in ("postgresql+psycopg2://TOKEN123@h/db", "postgresql+psycopg2://u@h/db?password=s3cretq"):
        shown = resolve_storage(url, __import__("pathlib").Path("."), 4).display
        assert shown == redact_uri(url) and not any(s in shown for s in SECRETS)


def test_failed_reason_warning_and_recorded_tags_are_redacted(tmp_path, capsys):
    from bench.execution.runner import RecipeRunner

    uri = "http://bob:hunter2pw@mlflow.example"
    recipe = write_recipe(tmp_path / "r.yaml", tiny_recipe(tmp_path))
    [variant] = load_recipe(recipe).variants
    row = variant_row(variant, "failed", f"MlflowException: API request to {uri}/api/2.0 failed", {}, "")
    assert "hunter2pw" not in row["reason"] and "bob:***@mlflow.example" in row["reason"]
    RecipeRunner.warn(f"cannot read the runs from the MLflow store '{uri}'")
    assert "hunter2pw" not in capsys.readouterr().err

    client = store.open_store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(store.ensure_experiment(client, "sqlite:///x", "e")).info.run_id
    store.set_tags(client, run_id, {"bench.reason": row["reason"], "other": f"at {uri}"})
    store.log_params(client, run_id, {"tracking.uri": uri})
    data = client.get_run(run_id).data
    assert not any("hunter2pw" in v for v in [*data.tags.values(), *data.params.values()])


def test_mlflow_lines_are_redacted_and_view_run_silenced(monkeypatch, capfd):
    monkeypatch.delenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = f"http://bob:hunter2pw@127.0.0.1:{free_port()}"
    with pytest.raises(Exception) as info:
        store.open_store(uri)
    assert "hunter2pw" not in str(info.value)
    import os

    assert os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"  # MLflow's "View run at" line
    logging.getLogger("mlflow.utils.rest_utils").warning("API request to %s/api/2.0 failed", uri)
    out = capfd.readouterr()
    assert "hunter2pw" not in out.err + out.out


def test_ui_server_gets_the_store_from_its_environment_not_its_command_line():
    from bench.ui.server import server_command, server_env

    uri = "postgresql://bob:hunter2pw@db/mlflow"
    assert not any("hunter2pw" in part for part in server_command("127.0.0.1", 5000))
    assert server_env(uri)["MLFLOW_BACKEND_STORE_URI"] == uri


def test_the_run_again_command_recorded_in_the_store_hides_the_password(tmp_path):
    """`bench run --tracking-uri http://bob:PASSWORD@host` wrote the password into the parent run's
    bench.command tag and the experiment's note (shown in the MLflow UI to everyone who can read
    the store): they repeat the command, so they repeat the URI redacted, as every other tag does."""
    from bench.tracking.experiment_view import description, rerun_command

    uri = "http://bob:hunter2pw@mlflow.example"
    loaded = load_recipe(write_recipe(tmp_path / "r.yaml", tiny_recipe(tmp_path)))
    for text in (rerun_command(loaded, "results", uri), description(loaded, "results", uri)):
        assert "hunter2pw" not in text and "http://bob:***@mlflow.example" in text, text
    loaded = load_recipe(write_recipe(tmp_path / "r.yaml", tiny_recipe(tmp_path)), [f"tracking.uri={uri}"])
    assert "hunter2pw" not in rerun_command(loaded, "results") and "bob:***@" in rerun_command(
        loaded, "results"
    )
