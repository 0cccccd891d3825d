"""optuna-dashboard, the optional extra ``gcnas[dashboard]``, serves a gcnas study through the command gcnas-search's
summary prints: real HTTP on loopback, a free port, a few seconds at most, the server always stopped."""
import contextlib
import importlib.util
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest

from processes import free_port, wait_for_json
from gcnas.cli.search import DASHBOARD_EXTRA, open_study_hint, tool_command

needs_dashboard = pytest.mark.skipif(importlib.util.find_spec("optuna_dashboard") is None,
                                     reason=f"the dashboard extra is not installed ({DASHBOARD_EXTRA})")
DASHBOARD = Path(sys.executable).with_name("optuna-dashboard")  # the console script the extra installs


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


@contextlib.contextmanager
def dashboard(storage: str, log: Path, wait: float = 15.0):
    """``optuna-dashboard STORAGE`` on a free loopback port; yields its base URL once it answers, stops it after."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        server = subprocess.Popen([str(DASHBOARD), storage, "--host", "127.0.0.1", "--port", str(port), "--quiet"],
                                  stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for_json(f"{base}/api/meta", server, wait, log)
            yield base
        finally:
            server.terminate()
            try:
                server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


@needs_dashboard
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_dashboard_serves_the_study_the_summary_names(searched, tmp_path, kind):
    root, result, study = searched
    storage = result.storage
    if kind == "journal":  # the same study in a journal file, which Optuna's tools open by its path, not a URL
        journal = tmp_path / "studies.journal"
        optuna.copy_study(from_study_name=result.study_name, from_storage=result.storage,
                          to_storage=optuna.storages.JournalStorage(
                              optuna.storages.journal.JournalFileBackend(str(journal))))
        storage = f"journal:///{journal}"
    hint = open_study_hint(result.study_name, storage)
    first = hint.splitlines()[0]
    assert first.startswith(f"Open the study: {tool_command('optuna-dashboard')} ") and DASHBOARD_EXTRA not in first
    where = first.split("optuna-dashboard ", 1)[1]
    assert where == (str(journal) if kind == "journal" else result.storage)
    assert hint.splitlines()[1].endswith(f"optuna trials --study-name {result.study_name} --storage {where} -f yaml")

    with dashboard(where, tmp_path / "dashboard.log") as base:
        listed = {s["study_name"]: s for s in _get(f"{base}/api/studies")["study_summaries"]}
        assert result.study_name in listed, sorted(listed)
        detail = _get(f"{base}/api/studies/{listed[result.study_name]['study_id']}")
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 5
    assert {t["number"]: (t["state"].upper(), {p["name"] for p in t["params"]}) for t in detail["trials"]} == \
        {t.number: (t.state.name, set(t.params)) for t in trials}


def test_the_hint_names_the_extra_where_the_dashboard_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # blocks the import, as if never installed
    first, second = open_study_hint("s", "sqlite:///outputs/studies.db").splitlines()
    assert first == ("Open the study: optuna-dashboard sqlite:///outputs/studies.db"
                     "   (pip install 'gcnas[dashboard]' first)")
    assert second == (f"            or: {tool_command('optuna')} trials --study-name s "
                      "--storage sqlite:///outputs/studies.db -f yaml")


def test_a_postgres_url_from_the_environment_is_named_not_shown(monkeypatch):
    monkeypatch.setenv("GCNAS_STORAGE_URL", "postgresql+psycopg://gcnas:secret@db:5432/gcnas")
    hint = open_study_hint("s", "postgresql+psycopg://gcnas:***@db:5432/gcnas")  # the URL as the summary has it
    assert hint.splitlines()[0] == f'Open the study: {tool_command("optuna-dashboard")} "$GCNAS_STORAGE_URL"'
    assert hint.endswith('--storage "$GCNAS_STORAGE_URL" -f yaml') and "secret" not in hint
    # a URL given on the command line (another one than the variable's) stays as it was given, redacted
    other = open_study_hint("s", "postgresql+psycopg://gcnas:***@other:5432/gcnas")
    assert "optuna-dashboard postgresql+psycopg://gcnas:***@other:5432/gcnas" in other
