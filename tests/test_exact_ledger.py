"""The deletion ledger and model folders: whole entries or nothing under SIGKILL, requests served once, edits found."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from expunge.cli.main import app
from expunge.errors import ExpungeError
from expunge.exact import Ledger, ModelFolder, SisaModel, train_sisa_folder
from expunge.exact.folder import CRASH_ENV, CRASH_POINTS
from expunge.exact.ledger import ids_hash

OPTIONS = {"n_train": 400, "n_test": 100}
SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A trained SISA folder (copied per test: training once keeps the tests fast)."""
    out = tmp_path_factory.mktemp("template") / "model"
    train_sisa_folder(out, "gaussians", shards=3, slices=2, epochs=3, dataset_options=OPTIONS)
    return out


@pytest.fixture
def folder(template, tmp_path):
    import shutil

    target = tmp_path / "model"
    shutil.copytree(template, target)
    return ModelFolder.open(target)


def _entries(folder: ModelFolder):
    with folder.ledger() as ledger:
        return ledger.entries()


def _states(folder: ModelFolder) -> set[str]:
    return {p.name for p in (folder.path / "states").iterdir()}


def test_a_request_is_served_once_and_recorded(folder):
    data = folder.training_data()
    ids = data.ids[[3, 30, 300]].tolist()
    receipt = folder.forget(ids, request_id="ticket-1")
    assert not receipt.already_served and receipt.path.is_file()
    written = json.loads(receipt.path.read_text())
    assert written["forget"] == {"count": 3, "ids_sha256": ids_hash(ids)}
    assert written["method"]["kind"] == "exact" and "exact" in written["guarantee"]
    assert json.dumps(ids)[1:-1] not in json.dumps(written)  # a hash of the IDs, not the IDs
    entries = _entries(folder)
    assert [e.request_id for e in entries] == ["train", "ticket-1"]
    assert entries[1].model_before == entries[0].model_after and entries[1].prev_hash == entries[0].entry_hash
    # the folder's model is the one the request produced, and it equals SISA from scratch without the IDs
    model = folder.model()
    scratch = SisaModel.train(data, 3, 2, recipe=model.recipe, seed=0, exclude_ids=ids)
    assert all(torch.equal(model.model.params[k], scratch.model.params[k]) for k in model.model.params)
    # re-sending the same request does nothing new
    again = folder.forget(ids, request_id="ticket-1")
    assert again.already_served and len(_entries(folder)) == 2
    with pytest.raises(ExpungeError, match="already served with other IDs"):
        folder.forget(data.ids[[4]].tolist(), request_id="ticket-1")


def test_bad_requests_write_nothing(folder):
    data = folder.training_data()
    folder.forget(data.ids[[1, 2]].tolist(), request_id="first")
    before_states, before_entries = _states(folder), len(_entries(folder))
    receipts = set(os.listdir(folder.path / "receipts"))
    cases = [
        ([10**9], "never in the training set"),
        (data.ids[[2, 5]].tolist(), "already deleted by request 'first'"),
        ([7, 7], "more than once"),
        ([], "names no IDs"),
    ]
    for ids, message in cases:
        with pytest.raises(ExpungeError, match=message):
            folder.forget(ids)
    with pytest.raises(ExpungeError, match="deletes exactly"):
        folder.forget([9], method="finetune")
    with pytest.raises(ExpungeError, match="request ID"):
        folder.forget([9], request_id="../escape")
    assert _states(folder) == before_states and len(_entries(folder)) == before_entries
    assert set(os.listdir(folder.path / "receipts")) == receipts


def test_weights_changed_outside_expunge_are_refused(folder):
    state = folder.state_path(_entries(folder)[-1].model_after)
    state.write_bytes(state.read_bytes()[:-1] + b" ")
    with pytest.raises(ExpungeError, match="do not match the ledger's last hash"):
        folder.forget([5])
    result, findings = folder.verify()
    assert result.ok and any("do not match" in f for f in findings)


def test_verify_names_the_first_edited_row(folder):
    data = folder.training_data()
    for i in range(3):
        folder.forget(data.ids[[10 + i]].tolist(), request_id=f"r{i}")
    assert folder.verify()[0].ok
    db = sqlite3.connect(folder.path / "ledger.sqlite")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE entries SET forget_count = 0 WHERE seq = 2")
    db.execute("DROP TRIGGER entries_append_only_update")  # a determined editor
    db.execute("UPDATE entries SET forget_count = 0 WHERE seq = 2")
    db.commit()
    db.close()
    result, _ = folder.verify()
    assert not result.ok and result.first_bad == 2 and "'r1' was edited" in result.reason
    runner = CliRunner()
    out = runner.invoke(app, ["ledger", "verify", str(folder.path)])
    assert out.exit_code == 1 and "broken at entry 2" in out.output


def test_a_file_that_is_not_a_ledger(tmp_path):
    (tmp_path / "x.sqlite").write_text("hello")
    with pytest.raises(ExpungeError, match="not an expunge ledger"):
        Ledger.open(tmp_path / "x.sqlite")
    db = sqlite3.connect(tmp_path / "other.sqlite")
    db.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    db.commit()
    db.close()
    with pytest.raises(ExpungeError, match="not an expunge ledger"):
        Ledger.open(tmp_path / "other.sqlite")


_SERVE = """
import sys
from expunge.exact import ModelFolder
folder = ModelFolder.open(sys.argv[1])
folder.forget([int(i) for i in sys.argv[3].split(",")], request_id=sys.argv[2])
"""


def _serve(path: Path, request: str, ids: list[int], crash: str | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop(CRASH_ENV, None)
    if crash:
        env[CRASH_ENV] = crash
    return subprocess.Popen([sys.executable, "-c", _SERVE, str(path), request, ",".join(map(str, ids))], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _check_whole(folder: ModelFolder, request: str, ids: list[int]) -> bool:
    """The ledger is intact and holds the request whole, or not at all; returns whether it holds it."""
    result, findings = folder.verify()
    assert result.ok, result
    assert not any("do not match" in f or "missing" in f for f in findings), findings
    with folder.ledger() as ledger:
        entry = ledger.find(request)
        deleted = ledger.deleted_by(ids)
    if entry is None:
        assert deleted == {}
        return False
    assert entry.forget_hash == ids_hash(ids) and set(deleted) == set(ids)
    assert folder.state_path(entry.model_after).is_file()
    return True


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_sigkill_at_each_point_leaves_a_whole_entry_or_nothing(folder, point):
    ids = folder.training_data().ids[[20, 21, 22]].tolist()
    process = _serve(folder.path, "kill-me", ids, crash=point)
    process.wait(timeout=120)
    assert process.returncode == -signal.SIGKILL
    served = _check_whole(folder, "kill-me", ids)
    assert served == (point == "after-commit")
    # sending it again completes it exactly once
    process = _serve(folder.path, "kill-me", ids)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err.decode()
    assert _check_whole(folder, "kill-me", ids)
    assert [e.request_id for e in _entries(folder)].count("kill-me") == 1
    assert (folder.path / "receipts" / "kill-me.json").is_file()


def test_sigkill_at_random_moments(folder):
    ids = folder.training_data().ids[[40, 41]].tolist()
    for delay in (0.5, 1.5, 3.0):
        process = _serve(folder.path, "timed", ids)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        _check_whole(folder, "timed", ids)
    process = _serve(folder.path, "timed", ids)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err.decode()
    assert _check_whole(folder, "timed", ids)
    assert [e.request_id for e in _entries(folder)].count("timed") == 1


def test_cli_train_forget_show(tmp_path):
    runner = CliRunner()
    out = tmp_path / "m"
    result = runner.invoke(app, ["sisa", "train", "--dataset", "wine", "--shards", "2", "--epochs", "4",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output
    (tmp_path / "ids.txt").write_text("0\n1\n")
    result = runner.invoke(app, ["forget", str(out), "--ids", f"@{tmp_path / 'ids.txt'}", "--request-id", "a"])
    assert result.exit_code == 0, result.output
    assert "served" in result.output and "x retraining the whole model" in result.output
    result = runner.invoke(app, ["forget", str(out), "--ids", "1"])
    assert result.exit_code == 2 and "already deleted by request 'a'" in result.output
    result = runner.invoke(app, ["ledger", "show", str(out)])
    assert result.exit_code == 0 and "train" in result.output and " a " in result.output
    result = runner.invoke(app, ["sisa", "train", "--dataset", "wine", "--shards", "100000", "--out",
                                 str(tmp_path / "n")])
    assert result.exit_code == 2 and "shards for" in result.output
    assert not (tmp_path / "n").exists() or not any((tmp_path / "n").iterdir())
    result = runner.invoke(app, ["sisa", "train", "--dataset", "wine", "--out", str(out)])
    assert result.exit_code == 2 and "not an empty folder" in result.output


def test_closed_form_folder_deletes_exactly_and_instantly(tmp_path):
    from expunge.exact import ClosedFormModel

    runner = CliRunner()
    out = tmp_path / "cf"
    result = runner.invoke(app, ["closed-form", "fit", "--dataset", "wine", "--out", str(out)])
    assert result.exit_code == 0, result.output
    folder = ModelFolder.open(out)
    data = folder.training_data()
    ids = data.ids[[0, 9, 17]].tolist()
    result = runner.invoke(app, ["forget", str(out), "--ids", ",".join(map(str, ids))])
    assert result.exit_code == 0, result.output
    model = folder.model()
    refit = ClosedFormModel.fit(model.backbone, data, ids=[i for i in data.ids.tolist() if i not in ids])
    assert torch.allclose(model.head.weights, refit.head.weights, atol=1e-9)
    with folder.ledger() as ledger:
        entry = ledger.last()
    assert entry.kind == "exact" and entry.cost["example_gradients"] == 0.0


def test_plain_model_folder_records_approximate_deletions(tmp_path):
    from expunge.data import load_dataset
    from expunge.training.engine import train_population
    from expunge.training.recipe import default_recipe

    train = load_dataset("wine").train
    model, _ = train_population(default_recipe("wine").with_(epochs=5), train, members=1)
    folder = ModelFolder.create(tmp_path / "plain", model, "model", dataset={"name": "wine", "options": {}})
    receipt = folder.forget(train.ids[:5].tolist(), method="finetune", hyperparameters={"epochs": 1})
    assert receipt.data["method"] == {"name": "finetune", "kind": "approximate", "hyperparameters": {"epochs": 1}}
    assert "approximate" in receipt.data["guarantee"]
    after = folder.model()
    assert not torch.equal(after.params["head.weight"], model.params["head.weight"])
    with pytest.raises(ExpungeError, match="unknown method"):
        folder.forget(train.ids[5:6].tolist(), method="finetun")
    assert folder.verify()[0].ok
