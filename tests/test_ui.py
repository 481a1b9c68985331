"""``bench ui``: host rules and redacted URIs (fast); on a store made by a real ``bench run``, the
MLflow UI served on 127.0.0.1 and seen in a real headless Chromium: it lands on the latest
study's variants with their test accuracy; ``--compare``; ``--tune`` in optuna-dashboard (slow)."""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main as cli
from bench.tracking.uris import redact_uri
from bench.tune.study import dashboard_command
from bench.ui.server import free_port
from tests.helpers import Served, bench_main, fresh_store, log_study
from tests.recipes import tiny_recipe, write_recipe

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip
ACC = "metrics.`test/acc`"

# --- fast: host rules, redaction ------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::", "myhost.example"])
def test_non_loopback_host_needs_allow_remote(host, capsys):
    assert cli(["ui", "--host", host, "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert f"--host {host}" in err and "no authentication" in err and "--allow-remote" in err


def test_allow_remote_warns_that_the_server_is_read_write_without_auth(capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    store = f"http://127.0.0.1:{free_port()}"  # nothing listens: it stops right after the host check
    code = cli(["ui", "--host", "0.0.0.0", "--allow-remote", "--tracking-uri", store, "--no-browser"])
    err = capsys.readouterr().err
    assert "warning:" in err and "read/write and without authentication" in err
    assert code == 3 and "cannot open the MLflow tracking store" in err


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("sqlite:////abs/results/mlflow.db", "sqlite:////abs/results/mlflow.db"),
        ("postgresql+psycopg2://bob:s3cret@db:5432/mlflow", "postgresql+psycopg2://bob:***@db:5432/mlflow"),
        ("https://ghp_token123@mlflow.example/", "https://***@mlflow.example/"),
        (
            "postgresql://u@h/db?sslmode=require&password=s3cret",
            "postgresql://***@h/db?sslmode=require&password=***",
        ),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("results/optuna.journal", "results/optuna.journal"),
    ],
)
def test_redact_uri_hides_passwords_and_tokens(uri, shown):
    assert redact_uri(uri) == shown


def test_unreachable_store_error_shows_no_password(capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # nothing listens there: fail at once
    uri = f"http://bob:hunter2pw@127.0.0.1:{free_port()}"
    assert cli(["ui", "--tracking-uri", uri, "--no-browser"]) == 3
    err = capsys.readouterr().err
    assert "cannot open the MLflow tracking store" in err and "bob:***@127.0.0.1" in err
    assert "hunter2pw" not in err


def test_dashboard_command_is_what_bench_tune_prints():
    from bench.tune.study import TuneOptions

    assert (
        dashboard_command(TuneOptions(recipe="recipes/smoke_tune.yaml"))
        == "bench ui --tune recipes/smoke_tune.yaml"
    )
    options = TuneOptions(
        recipe="r.yaml", results_dir="out", storage="postgresql://u:pw@db/optuna", study="s1"
    )
    assert dashboard_command(options) == (
        "bench ui --tune r.yaml --results-dir out --storage 'postgresql://u:***@db/optuna' --study s1"
    )


# --- slow: a real store, a real server, a real browser ------------------------------------------------


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_image_folder) -> dict:
    """A real ``bench run`` of two variants, two seeds each (one epoch), into a fresh store."""
    tmp = tmp_path_factory.mktemp("ui_study")
    recipe = tiny_recipe(tiny_image_folder, name="uitest", matrix={"train.freeze": [0, 2]})
    recipe["train"]["epochs"] = 1
    recipe["seeds"] = [0, 1]
    recipe["description"] = "two freezing depths on the tiny folder"
    path = write_recipe(tmp / "uitest.yaml", recipe)
    results = tmp / "results"
    with pytest.MonkeyPatch.context() as env:  # in process: the interpreter start is not under test
        env.setenv("MLFLOW_TRACKING_URI", "")  # the default store, results/mlflow.db
        fresh_store(results / "mlflow.db")
        proc = bench_main("run", str(path), "--results-dir", str(results))
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = pd.read_csv(results / "uitest" / "runs.csv")
    assert list(runs["status"]) == ["finished"] * 4 and runs["group"].nunique() == 2
    return {"recipe": path, "results": results, "runs": runs}


@pytest.fixture(scope="module")
def landing(study):
    """One ``bench ui`` on the study, shared by the tests that only read its landing view (a
    server's start is most of their time): (its port, the URL it printed, the server)."""
    port = free_port()
    ui = Served(str(study["recipe"]), "--results-dir", str(study["results"]), "--port", str(port))
    try:
        url = ui.wait_for("ready:")
        yield port, url, ui
    finally:
        ui.stop()


@pytest.fixture
def served():
    started: list[Served] = []

    def start(*args: str) -> Served:
        started.append(Served(*args))
        return started[-1]

    yield start
    for s in started:
        s.stop()


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read().decode())


def _screenshot_path(tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ.get("BENCH_UI_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def _browser():
    if CHROMIUM is None:
        pytest.skip("no chromium installed (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    return sync_api.sync_playwright()


def _table_rows(page) -> list[tuple[str, str | None]]:
    """(name, test/acc cell text) of each row AG Grid renders, top to bottom; a variant's group
    row is named "Group: <bench.group>"."""
    return page.evaluate(
        """(acc) => [...document.querySelectorAll('.ag-pinned-left-cols-container .ag-row')]
          .sort((a, b) => a.getAttribute('row-index') - b.getAttribute('row-index'))
          .map(row => {
            const name = row.querySelector('[col-id="attributes.`Run Name`"]');
            const cell = document.querySelector(`.ag-center-cols-container .ag-row[row-index="${
              row.getAttribute('row-index')}"] [col-id="${acc}"]`);
            const line = name ? name.innerText.split('\\n').find(l => /[a-z]/i.test(l) && !l.startsWith('#')) : '';
            return [line.trim(), cell ? cell.innerText.trim() : null];
          })""",
        ACC,
    )


def _header_x(page) -> dict[str, int]:
    """Column id -> its header's left edge (only the columns AG Grid renders: those on screen)."""
    return page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('.ag-header-cell[col-id]')]
          .map(e => [e.getAttribute('col-id'), Math.round(e.getBoundingClientRect().x)]))"""
    )


def _js_number(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


@pytest.mark.slow
def test_ui_records_the_landing_view_in_the_experiment(study, landing):
    port, url, ui = landing
    base = f"http://127.0.0.1:{port}"
    assert (
        url.startswith(f"{base}/#/experiments/")
        and "/runs?" in url
        and "workflowType=machine_learning" in url
    )
    assert any(
        f"MLflow UI for sqlite:///{study['results'].resolve()}/mlflow.db at {base}" in line
        for line in ui.lines
    )
    exp = _get_json(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=uitest")["experiment"]
    tags = {t["key"]: t["value"] for t in exp["tags"]}
    assert tags["mlflow.experimentKind"] == "custom_model_development"  # not the GenAI view
    note = tags["mlflow.note.content"]
    assert "two freezing depths on the tiny folder" in note
    assert (
        f"bench run {study['recipe']}" in note
        and str(study["results"].resolve() / "uitest" / "report.md") in note
    )
    envelope = json.loads(tags["mlflow.sharedViewState.bench-latest-study"])
    state = json.loads(envelope["state"])
    assert set(study["runs"]["mlflow_run_id"]) == {
        part.strip(" '()") for part in state["searchFilter"].split("IN", 1)[1].split(",")
    }
    assert {"tags.`axis.freeze`", ACC, "metrics.`throughput/train_img_s`", "metrics.`time/wall_s`",
            "tags.`bench.status`"} <= set(state["selectedColumns"])  # fmt: skip
    assert state["orderByKey"] == ACC and state["orderByAsc"] is False
    # one row per variant, its seeds averaged and folded; the metrics before the axis columns
    assert state["groupBy"] == {
        "aggregateFunction": "average",
        "groupByKeys": [{"mode": "tag", "groupByData": "bench.group"}],
    }
    assert state["groupsExpanded"] == {f"tag.bench.group.{g}": False for g in study["runs"]["group"]}
    columns = state["selectedColumns"]
    assert columns.index(ACC) < columns.index("tags.`axis.freeze`")


@pytest.mark.slow
@pytest.mark.browser
def test_browser_lands_on_one_row_per_variant_with_its_mean_accuracy_first(study, landing, tmp_path):
    _, url, _ = landing
    runs = study["runs"]
    means = runs.groupby("group")["test/acc"].mean()
    expected = {f"Group: {group}": f"{_js_number(acc)} (average)" for group, acc in means.items()}
    with _browser() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(url)
            page.get_by_text("Group: ").first.wait_for(timeout=120_000)
            page.locator(f'.ag-center-cols-container [col-id="{ACC}"]').first.wait_for(timeout=60_000)
            page.wait_for_timeout(1500)  # the saved column order is applied after the first render
            page.screenshot(path=str(_screenshot_path(tmp_path, "bench-ui-runs.png")))
            rows = _table_rows(page)
            headers = _header_x(page)
            body = page.inner_text("body")
        finally:
            browser.close()
    # one row per variant (its two seeds folded into it), its seeds' mean test accuracy, best first
    assert dict(rows) == expected, rows
    accuracies = [float(text.split()[0]) for _, text in rows]
    assert accuracies == sorted(accuracies, reverse=True)
    # test accuracy on screen, before the axis columns (they used to push it off to the right)
    assert ACC in headers and headers[ACC] < 1600
    assert all(x > headers[ACC] for col, x in headers.items() if col.startswith("tags.`axis."))
    assert "Group by: bench.group" in body
    assert "two freezing depths on the tiny folder" in body  # the experiment's description
    assert "Judges" not in body and "Model training" in body  # the model-training view, not GenAI


@pytest.mark.slow
@pytest.mark.browser
def test_browser_compare_charts_accuracy_against_throughput_per_variant(study, served, tmp_path):
    ui = served(str(study["recipe"]), "--results-dir", str(study["results"]), "--port", "0", "--compare")
    url = ui.wait_for("ready:")
    assert "compareRunsMode=CHART" in url and "viewStateShareKey=bench-compare" in url
    groups = sorted(study["runs"]["group"].unique())
    with _browser() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(url)
            card = page.locator('[data-testid="experiment-view-compare-runs-card"]').first
            card.locator(".g-xtitle").wait_for(timeout=120_000)
            page.wait_for_function(
                "(n) => document.querySelector('[data-testid=\"experiment-view-compare-runs-card\"]')"
                "?.querySelectorAll('.scatterlayer .point').length >= n",
                arg=len(groups),
                timeout=60_000,
            )
            page.screenshot(path=str(_screenshot_path(tmp_path, "bench-ui-compare.png")))
            section = page.locator(
                '[data-testid="experiment-view-compare-runs-section-header"]'
            ).first.inner_text()
            x_title = card.locator(".g-xtitle").text_content()
            y_title = card.locator(".g-ytitle").text_content()
            points = card.locator(".scatterlayer .point").count()
            legend = card.inner_text()
        finally:
            browser.close()
    # the first chart: test accuracy against throughput, one point per finished variant
    assert "bench: finished variants" in section
    assert (x_title, y_title) == ("throughput/train_img_s", "test/acc")
    assert points == len(groups)
    assert all(group in legend for group in groups)


@pytest.mark.slow
@pytest.mark.browser
def test_tune_study_in_optuna_dashboard(tmp_path, tiny_image_folder, served, monkeypatch):
    recipe = tiny_recipe(tiny_image_folder, name="uitune")
    recipe["train"]["epochs"] = 1
    recipe["tune"] = {
        "n_trials": 2,
        "space": {"train.optimizer.lr": {"float": [1e-3, 0.1], "log": True}},
        "recheck_top": 0,
    }  # the dashboard shows trials; a re-check would add 6 runs
    path = write_recipe(tmp_path / "uitune.yaml", recipe)
    results = tmp_path / "results"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")  # the default store, results/mlflow.db
    fresh_store(results / "mlflow.db")
    proc = bench_main("tune", str(path), "--results-dir", str(results))  # in process, as above
    assert proc.returncode == 0, proc.stderr[-3000:]
    port = free_port()
    ui = served("--tune", str(path), "--results-dir", str(results), "--port", str(port))
    url = ui.wait_for("ready:")
    assert url.startswith(f"http://127.0.0.1:{port}/dashboard/studies/")
    studies = _get_json(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
    assert [s["study_name"] for s in studies] == ["uitune"]
    detail = _get_json(f"http://127.0.0.1:{port}/api/studies/{studies[0]['study_id']}")
    assert len(detail["trials"]) == 2 and all(t["state"] == "Complete" for t in detail["trials"])
    assert detail["objective_names"] == ["val/acc (last epoch)"]  # set_metric_names, as served
    with _browser() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(url)
            page.get_by_text("uitune").first.wait_for(timeout=60_000)
            page.get_by_text("train.optimizer.lr").first.wait_for(timeout=60_000)
            page.screenshot(path=str(_screenshot_path(tmp_path, "bench-ui-tune.png")))
            body = page.inner_text("body")
        finally:
            browser.close()
    assert "val/acc (last epoch)" in body and "Objective 0" not in body


def test_ui_says_to_wait_for_ready_before_the_server_answers(tmp_path, served):
    """The URL and 'press Ctrl-C to stop' were printed ~20 s before the MLflow server answered: a
    user who opened it at once got 'connection refused', with nothing said until 'ready:'."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log_study(uri, "waits", {"a": {"acc": [0.8, 0.81]}})
    ui = served("--experiment", "waits", "--tracking-uri", uri, "--port", "0")
    assert ui.wait_for("ready:").startswith("http://127.0.0.1:")
    before = "".join(ui.lines[:-1])
    assert "starting the server: the URL answers once 'ready:' is printed" in before, before
