"""First-hour traps, round 5: store and folder faults around a run, SWA/EMA that average next to
nothing, the report's memory wording, two downloads into one data folder. Each test reproduces what
a new user ran and saw, and checks what they should have seen."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from bench.cli import main
from tests import procs
from tests.helpers import (
    REPO,
    all_runs,
    bench_env,
    bench_main,
    children,
    client_for,
    parents,
    reached,
    store_args,
)
from tests.recipes import tiny_recipe, write_recipe

# --- a store failure on the parent run -------------------------------------------------------------


def test_a_store_failure_on_the_parent_run_exits_3_in_one_line(tmp_path, tiny_image_folder, capsys):
    """The artifact store failing as `bench run` saved the parent run's recipe.yaml gave exit 1 and
    a traceback (README: 3 is the store's code), and left the parent run RUNNING: the closing
    step that failed first (saving runs.csv) skipped closing it."""
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tiny_image_folder, **{"train.epochs": 1}))
    (tmp_path / "mlartifacts").write_text("a file where the artifact folder goes\n")
    assert main(["run", str(path), *store_args(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    error = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error) == 1, err
    assert (
        f"the MLflow tracking store 'sqlite:///{tmp_path / 'mlflow.db'}' failed while writing the parent "
        in error[0]
    )
    assert "NotADirectoryError" in error[0] and "run the same command again once the store works" in error[0]
    (parent,) = parents(all_runs(tmp_path))
    assert parent.info.status == "FAILED"  # closed, not left RUNNING for the next command to close
    assert not children(all_runs(tmp_path))  # stopped before anything trained
    (tmp_path / "mlartifacts").unlink()  # the store works again: the same command runs the study
    assert main(["run", str(path), *store_args(tmp_path)]) == 0
    assert [r.data.tags["bench.status"] for r in children(all_runs(tmp_path))] == ["finished"]


# --- the results folder deleted while bench run runs ------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("store", ["in the results folder", "elsewhere"])
def test_a_results_folder_deleted_mid_run_stops_the_command_in_one_line(tmp_path, tiny_image_folder, store):
    """`rm -rf results` while `bench run` trained: every later variant failed one by one, each with
    MLflow's errors and a reason claiming 'the checkpoint is kept and the next run resumes it'
    (or, with the store elsewhere, trained on with its weights going into a folder made again).
    Now: stopped after the variant then running, one line naming the folder, exit 3; the runs of
    a store elsewhere are kept and the same command trains what is missing into them."""
    from bench.recipe.load import load_recipe

    recipe = tiny_recipe(tiny_image_folder, **{"train.epochs": 2, "train.device": "cpu", "seeds": [0, 1, 2]})
    path = write_recipe(tmp_path / "tiny.yaml", recipe)
    first = load_recipe(path).variants[0].variant_id
    results = tmp_path / "results"
    uri = ["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"] if store == "elsewhere" else []
    command = [sys.executable, "-m", "bench.cli", "run", str(path), "--results-dir", str(results), *uri,
               "--order", "variant"]  # fmt: skip
    env = bench_env(tmp_path, f"run.epoch_end.1@{first}:block", MLFLOW_TRACKING_URI="")
    proc = procs.popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reached(tmp_path, proc)  # the first variant has trained one of its two epochs
    shutil.rmtree(results)
    (tmp_path / "release").touch()
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 3, err
    assert "Traceback" not in err, err
    error = [line for line in err.splitlines() if line.startswith("error:")]
    assert error == [
        f"error: the results folder {results} was deleted or moved while bench run ran (1 of 3 runs done): "
        "checkpoints, exported weights and runs.csv in it are gone; "
        + (f"the MLflow store {results / 'mlflow.db'} and the runs recorded in it went too"
           if store != "elsewhere" else f"the runs recorded in the MLflow store 'sqlite:///{tmp_path / 'mlflow.db'}' are kept")
        + "; stopped. Run the same command again: it trains what is missing"
    ], err  # fmt: skip
    assert "seed=1" not in err  # no later variant started
    assert "[parameters:" not in err, err  # MLflow's log of the failed write: its error, not its SQL's values
    if store == "elsewhere":
        (run,) = children(all_runs(tmp_path))  # the first variant's run stays in the store
        recorded = run.info.run_id
    env = bench_env(tmp_path, MLFLOW_TRACKING_URI="")
    rerun = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    if store == "elsewhere":  # the same runs, trained again where their weights went missing
        runs = children(all_runs(tmp_path))
        assert len(runs) == 3 and recorded in {r.info.run_id for r in runs}
        assert {r.data.tags["bench.status"] for r in runs} == {"finished"}
    else:
        client = client_for(results)
        exp = client.get_experiment_by_name("tiny")
        runs = children(client.search_runs([exp.experiment_id]))
        assert sorted(r.data.tags["bench.status"] for r in runs) == ["finished"] * 3
    assert all((results / "tiny" / "weights" / f"seed={s}.pt").is_file() for s in range(3))


def test_a_store_error_is_told_by_its_own_line_not_a_value_it_was_writing(tmp_path):
    """A variant's failure reason quotes the store's error; writing that reason as a tag into a store
    that failed again made MLflow log the failed SQL, and bench's one-line filter picked the line of
    its parameters ("[parameters: [('the tracking store failed while ... (sqlite3.OperationalError)")
    as the error: a screen-wide line of SQL values in the user's terminal."""
    import sqlalchemy

    from bench.tracking.mlflow_store import error_line

    db = tmp_path / "x.db"
    with sqlalchemy.create_engine(f"sqlite:///{db}").begin() as con:
        con.execute(sqlalchemy.text("CREATE TABLE tags (value TEXT)"))
    read_only = sqlalchemy.create_engine(f"sqlite:///file:{db}?mode=ro&uri=true")
    reason = (
        "the tracking store failed while recording the run: MlflowException: (sqlite3.OperationalError) x"
    )
    with pytest.raises(sqlalchemy.exc.OperationalError) as caught, read_only.begin() as con:
        con.execute(sqlalchemy.text("INSERT INTO tags VALUES (:v)"), {"v": reason})
    assert error_line(str(caught.value)) == "(sqlite3.OperationalError) attempt to write a readonly database"


# --- a list key given one value -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("seeds=3", "seeds: must be a list, e.g. seeds=[0,1,2] for three seeds (a YAML list in the file); got 3"),
        ("data.classes=red", "data.classes: must be a list, e.g. data.classes=[a,b] (a YAML list in the file); "
                             "got 'red'"),
    ],
)  # fmt: skip
def test_a_list_key_given_one_value_says_how_to_write_a_list(
    tmp_path, tiny_image_folder, override, said, capsys
):
    """`bench run recipe.yaml seeds=3` (three seeds, the user meant) said "seeds: Input should be a
    valid list"; `data.classes=red` said "2 problems:" and the same line twice."""
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tiny_image_folder))
    assert main(["run", str(path), override, "--dry-run", *store_args(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: {path}: {said}\n"


# --- the same command again, with runs skipped for want of a device -------------------------------------


def test_a_rerun_does_not_say_it_resumes_runs_skipped_again(tmp_path, tiny_image_folder, monkeypatch):
    """`bench run smoke_pretrain.yaml smoke.yaml` again on a CPU, everything finished: it said
    "[0/18 done, 18 left, the rest skipped here]" (14 of them were finished) and "resuming
    precision=amp_fp16,seed=0 from the start into MLflow run ..." for each run then skipped again."""
    monkeypatch.setenv("BENCH_FORCE_NO_CUDA", "1")
    recipe = tiny_recipe(tiny_image_folder, **{"train.epochs": 1})
    recipe["matrix"] = {"train.precision": ["fp32", "amp_fp16"]}
    path = write_recipe(tmp_path / "r.yaml", recipe)
    command = ["run", str(path), "--order", "variant", *store_args(tmp_path)]
    assert bench_main(*command).returncode == 0
    again = bench_main(*command)
    assert again.returncode == 0, again.stderr
    assert "resuming" not in again.stderr, again.stderr
    lines = again.stderr.splitlines()
    assert (
        lines[0] == "[0/2 done, 2 left, the rest already finished or skipped here] precision=fp32,seed=0"
    ), lines
    assert "[2/2 done] precision=amp_fp16,seed=0: skipped - amp_fp16 needs a CUDA device" in again.stderr


# --- SWA and EMA that average next to nothing --------------------------------------------------------

SWA = {"lr_factor": 0.5}


@pytest.mark.parametrize(
    ("epochs", "start", "said"),
    [
        (1, 0, "train.swa: start_epoch=0 with train.epochs=1 averages one snapshot, the last epoch's weights: "
               "the delivered 'swa' model is those weights with BatchNorm recomputed, not an average; SWALR "
               "replaces train.scheduler from epoch 0, so the recipe's schedule never runs; train longer (SWA"),
        (3, 2, "train.swa: start_epoch=2 with train.epochs=3 averages one snapshot, the last epoch's weights: "
               "the delivered 'swa' model is those weights with BatchNorm recomputed, not an average; train "
               "longer or start SWA earlier"),
        (4, 0, "train.swa: start_epoch=0 averages every epoch's weights from the first, barely trained one; "
               "SWALR replaces train.scheduler from epoch 0, so the recipe's schedule never runs; start it "
               "later, e.g. train.swa.start_epoch=3"),
        (4, 2, None),  # two snapshots from halfway: what SWA is
    ],
)  # fmt: skip
def test_swa_that_averages_next_to_nothing_warns_at_validation(tmp_path, tiny_image_folder, epochs, start, said,
                                                               capsys):  # fmt: skip
    """`bench run smoke.yaml train.epochs=1 train.swa.start_epoch=0` said nothing: the 'swa' variant
    delivered the last epoch's weights with BatchNorm recomputed, and SWALR had replaced the schedule
    all along; a user read its test/acc as what SWA does."""
    recipe = tiny_recipe(tiny_image_folder, **{"train.epochs": epochs})
    recipe["matrix"] = {"train.swa": [None, {"start_epoch": start, **SWA}]}
    path = write_recipe(tmp_path / "r.yaml", recipe)
    assert main(["run", str(path), "--dry-run", *store_args(tmp_path)]) == 0
    err = capsys.readouterr().err
    if said is None:
        assert "train.swa" not in err, err
        return
    (line,) = [line for line in err.splitlines() if line.startswith("warning:")]
    assert line.startswith(f"warning: {path}: variant(s) swa=on: {said}"), line


@pytest.mark.parametrize(
    ("ema", "said"),
    [
        ({"decay": 0.999}, "train.ema: decay=0.999 averages over ~1000 updates but the run makes 2 (1 epoch(s) x 2 "
                           "step(s)): 100% of the delivered 'ema' model is still the weights after the first "
                           "optimizer step(s), barely trained; lower train.ema.decay or train longer"),
        ({"decay": 0.3}, "train.ema: decay=0.3 averages over fewer than 2 updates: the delivered 'ema' model is "
                         "effectively the latest weights, not an average"),
        ({"decay": 0.5, "every": 5}, "train.ema: every=5 is more than the run's 2 optimizer step(s): the EMA model "
                                     "is never updated, so the variant delivers its starting weights"),
        ({"decay": 0.5}, None),  # half first step, half second: an average of the run, if a short one
    ],
)  # fmt: skip
def test_ema_that_averages_next_to_nothing_warns_before_the_runs(tmp_path, tiny_image_folder, ema, said):
    """An EMA with the usual decay 0.999 on a 2-step run delivered the weights of its first step
    (test/acc far below the raw weights'), and one with decay 0.3 the raw weights: no word of it."""
    recipe = tiny_recipe(tiny_image_folder, **{"train.epochs": 1, "data.subset": 64, "train.ema": ema})
    path = write_recipe(tmp_path / "r.yaml", recipe)
    result = bench_main("run", str(path), *store_args(tmp_path))
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    if said is None:
        assert warnings == [], warnings
    else:
        assert len(warnings) == 1 and warnings[0].startswith(f"warning: {path}: {said}"), warnings


# --- the report's memory wording -----------------------------------------------------------------


def test_the_report_says_memory_was_not_recorded_without_a_doubled_word(tmp_path):
    """Runs without peak memory (neither GPU memory nor memory/peak_rss_mb) gave the report
    "Memory: memory (not recorded), mean over seeds" and "Memory here is the memory (not recorded),
    not a device's memory": a mean of nothing, said twice."""
    from tests.helpers import fresh_store, log_study

    uri = fresh_store(tmp_path / "mlflow.db")
    none = {"memory/peak_rss_mb": float("nan")}  # how MLflow keeps a value that was never measured
    log_study(uri, "nomem", {"base": {"acc": [0.8, 0.81], "metrics": none},
                             "other": {"acc": [0.7, 0.72], "metrics": none}})  # fmt: skip
    assert (
        main(["report", "--experiment", "nomem", "--tracking-uri", uri, "--results-dir", str(tmp_path)]) == 0
    )
    md = (tmp_path / "nomem" / "report.md").read_text()
    assert "memory (not recorded)" not in md, md
    assert "Memory: not recorded (no run has peak GPU memory or `memory/peak_rss_mb`). Wall s" in md
    assert "Memory was not recorded, so it is on no front." in md


# --- two downloads of CIFAR-10 into one folder -------------------------------------------------------


def _cifar_archive(folder) -> tuple[bytes, dict[str, str]]:
    """A small archive in torchvision's CIFAR-10 layout (10 images a batch) and each file's md5."""
    import hashlib
    import io
    import pickle
    import tarfile

    import numpy as np

    rng = np.random.default_rng(0)
    names = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
    batches = folder / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name in names:
        entry = {"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8), "labels": list(range(10))}
        (batches / name).write_bytes(pickle.dumps(entry))
    label_names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (batches / "batches.meta").write_bytes(pickle.dumps({"label_names": label_names}))
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in batches.iterdir()}  # noqa: S324
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(batches, arcname="cifar-10-batches-py")
    archive = buffer.getvalue()
    md5["archive"] = hashlib.md5(archive).hexdigest()  # noqa: S324
    return archive, md5


def use_archive(monkeypatch, md5: dict[str, str], url: str) -> None:
    """torchvision's CIFAR10 told the URL and checksums of ``_cifar_archive``'s archive."""
    from torchvision.datasets import CIFAR10

    monkeypatch.delenv("BENCH_OFFLINE", raising=False)
    monkeypatch.setattr(CIFAR10, "url", url)
    monkeypatch.setattr(CIFAR10, "tgz_md5", md5["archive"])
    monkeypatch.setattr(
        CIFAR10, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)]
    )
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5["batches.meta"]})


def test_two_downloads_into_one_folder_leave_each_other_alone(tmp_path, monkeypatch):
    """Two commands downloading CIFAR-10 into the same data folder at once wrote one file,
    `cifar-10-python.tar.gz`; the first to fail (a dropped connection) deleted the folder with the
    other's partial download in it, so the other failed too ("File not found or corrupted")."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from bench.data import sources
    from bench.errors import DataError

    archive, md5 = _cifar_archive(tmp_path / "made")
    first_asked, first_done = threading.Event(), threading.Event()
    half = len(archive) // 2

    class Server(BaseHTTPRequestHandler):
        gets = 0

        def log_message(self, *args):  # quiet
            pass

        def do_GET(self):
            if self.headers.get("Method") == "HEAD":  # torchvision's look for a redirect, first
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            Server.gets += 1
            first = Server.gets == 1
            self.send_response(200)
            self.send_header("Content-Length", str(len(archive)))
            self.end_headers()
            self.wfile.write(archive[:half])
            self.wfile.flush()
            if first:  # the connection drops halfway, once the second download has begun
                first_asked.set()
                second_asked.wait(60)
                self.close_connection = True
                return
            second_asked.set()
            first_done.wait(60)  # the rest once the first download has failed and cleaned up
            self.wfile.write(archive[half:])

    second_asked = threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    use_archive(monkeypatch, md5, f"http://127.0.0.1:{server.server_address[1]}/cifar-10-python.tar.gz")
    root = tmp_path / "data"
    outcome: dict[str, object] = {}

    def download(name: str) -> None:
        try:
            outcome[name] = sources.cifar10(root)
        except DataError as exc:
            outcome[name] = exc
        finally:
            if name == "first":
                first_done.set()

    first = threading.Thread(target=download, args=("first",))
    first.start()
    assert first_asked.wait(60)
    second = threading.Thread(target=download, args=("second",))
    second.start()
    first.join(120), second.join(120)
    server.shutdown()
    assert isinstance(outcome["first"], DataError) and "the download failed" in str(outcome["first"])
    data = outcome["second"]
    assert not isinstance(data, Exception), data  # the second download was left alone and finished
    assert data.train_images.shape == (50, 3, 32, 32) and data.test_images.shape == (10, 3, 32, 32)
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py"]  # no temporary left
    assert sources.cifar10(root).classes == data.classes  # a later command finds it in place


def test_an_archive_an_earlier_download_left_is_unpacked_not_fetched_again(tmp_path, monkeypatch):
    """torchvision's own download left `cifar-10-python.tar.gz` in the data folder: it is used as it
    is (nothing answers at the URL here), and stays."""
    from bench.data import sources

    archive, md5 = _cifar_archive(tmp_path / "made")
    use_archive(monkeypatch, md5, "http://127.0.0.1:9/cifar-10-python.tar.gz")  # the discard port: refused
    root = tmp_path / "data"
    root.mkdir()
    (root / "cifar-10-python.tar.gz").write_bytes(archive)
    assert sources.cifar10(root).train_images.shape == (50, 3, 32, 32)
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]
