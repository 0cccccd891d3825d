"""gcnas-report: Optuna's plots and ours as real PNGs, and a Markdown summary of the top trials."""
from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request

import numpy as np
import optuna
import pytest
import yaml
from PIL import Image
from hydra import compose, initialize_config_module

from processes import free_port, wait_for_json
from gcnas.cli.report import report
from gcnas.errors import ConfigError
from gcnas.report import placement_counts, write_report
from gcnas.machine import cpu_model
from gcnas.search import record
from gcnas.search.summary import ranked_trials


def test_report_pictures_and_summary(searched, tmp_path):
    root, result, study = searched
    rep = write_report(study, tmp_path / "r", top_k=3, html=False)
    names = sorted(p.name for p in rep.pictures)
    assert names == ["intermediate_values.png", "optimization_history.png", "param_importances.png",
                     "placements.png"], rep.skipped
    for p in rep.pictures:
        img = np.asarray(Image.open(p).convert("L"), dtype=float)
        assert img.shape[0] > 200 and img.shape[1] > 300 and img.std() > 10, p.name  # drawn, not blank
    text = rep.summary.read_text()
    assert f"# Study `{result.study_name}`" in text and "| trial | role | val acc | vs plain |" in text
    assert f"## Best architecture (trial {result.best_number})" in text
    assert all(f"![{p.stem}]({p.name})" in text for p in rep.pictures)
    # every trial ran in the session's search, on this CPU: the summary says so, with the count (the description's
    # torch threads are the search's, which other tests may since have changed in this process)
    machine = record.machine_of(study, study.trials[0])
    assert machine.startswith(cpu_model()) and {record.machine_of(study, t) for t in study.trials} == {machine}
    assert f"Measured on: {machine} ({len(study.trials)} trials)." in text


def test_placement_counts_match_the_top_architectures(searched):
    _, _, study = searched
    top = [t for t in ranked_trials(study)[:3] if t.user_attrs.get("role") != "baseline"]
    stages, positions, counts = placement_counts(top, study)
    expected = {}
    for t in top:
        for p in yaml.safe_load(record.architecture_of(study, t))["placements"]:
            expected[(p["stage"], p["position"])] = expected.get((p["stage"], p["position"]), 0) + 1
    assert counts == expected and stages == sorted({s for s, _ in expected})
    assert set(positions) == {p for _, p in expected}


def _cfg(root, *overrides):
    with initialize_config_module(config_module="gcnas.conf", version_base="1.3"):
        return compose("report", overrides=[f"paths.root={root}", *overrides])


def test_report_config_defaults_to_the_study_folder(searched):
    root, result, _ = searched
    rep = report(_cfg(root, f"study.name={result.study_name}", "report.html=false"))
    assert rep.dir == root / result.study_name / "report" and rep.summary.is_file()


@pytest.mark.parametrize("overrides,message", [
    (["report.top_k=0"], "report.top_k: must be an integer >= 1; got 0"),
    (["report.html=sometimes"], "report.html: must be auto, true or false; got 'sometimes'"),
    (["report.dashboard=0"], re.escape("report.dashboard: must be false, true (port 8080) or a port number in "
                                       "[1, 65535]; got 0")),
    (["report.dashboard=always"], "report.dashboard: must be .*; got 'always'"),
    (["study.name=nope"], "study.name: no study 'nope' in"),
])
def test_bad_report_input(searched, overrides, message):
    root, result, _ = searched
    args = [f"study.name={result.study_name}", *overrides] if "study.name" not in overrides[0] else overrides
    with pytest.raises(ValueError, match=message):
        report(_cfg(root, *args))


def test_a_dashboard_that_cannot_start_is_refused_before_the_report(searched, tmp_path, monkeypatch):
    root, result, _ = searched
    args = (f"study.name={result.study_name}", f"report.dir={tmp_path / 'rep'}", "report.html=false")
    with socket.socket() as taken:  # another server on the port
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        used = re.escape(f"report.dashboard={port}: port {port} on 127.0.0.1 cannot be used (Address already in use)")
        with pytest.raises(ConfigError, match=used):
            report(_cfg(root, *args, f"report.dashboard={port}"))
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # as where the extra is not installed
    with pytest.raises(ConfigError, match=re.escape("report.dashboard=true: optuna-dashboard is not installed; "
                                                    "pip install 'gcnas[dashboard]'")):
        report(_cfg(root, *args, "report.dashboard=true"))
    assert not (tmp_path / "rep").exists()  # refused before any work


def test_an_unwritable_report_dir_is_named(searched, tmp_path):
    root, result, study = searched
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a folder under a regular file cannot be made, even by root (chmod would not stop root)
    with pytest.raises(ConfigError, match=f"report.dir: cannot write to {blocker / 'sub'} \\(Not a directory\\)"):
        report(_cfg(root, f"study.name={result.study_name}", f"report.dir={blocker / 'sub'}", "report.html=false"))
    with pytest.raises(ConfigError, match="report.dir: cannot write to"):  # the library call says the same
        write_report(study, blocker, html=False)
    assert blocker.read_text() == ""


def test_cli_report_exit_codes(searched, tmp_path):
    root, result, _ = searched
    # the report, then the study's dashboard (report.dashboard, the gcnas[dashboard] extra) until Ctrl-C: exit 0
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "gcnas.cli.report", f"paths.root={root}",
                               f"study.name={result.study_name}", f"report.dir={tmp_path / 'cli'}",
                               f"report.dashboard={port}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    api, polled, stop_polling = f"http://127.0.0.1:{port}/api/studies", [], threading.Event()

    def poll():  # as the dashboard's page does: Ctrl-C arrives while the server answers
        while not stop_polling.is_set():
            try:
                with urllib.request.urlopen(api, timeout=5) as r:
                    polled.append(r.status)
            except OSError:
                return

    try:
        # the report is written first, then the server answers
        served = wait_for_json(api, server, wait=240)["study_summaries"]
        assert [s["study_name"] for s in served] == [result.study_name]
        assert (tmp_path / "cli" / "placements.png").is_file()
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        while len(polled) < 3 and poller.is_alive():
            poller.join(0.05)
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
            try:
                out, err = server.communicate(timeout=60)
            except subprocess.TimeoutExpired:  # never leave a server behind
                server.kill()
                server.communicate()
                raise
            finally:
                stop_polling.set()
    assert server.returncode == 0, err[-2000:]
    assert f"Dashboard of {result.study_name}: http://127.0.0.1:{port}/dashboard/" in out
    assert out.rstrip().endswith("Dashboard stopped.") and "Traceback" not in err
    res = subprocess.run([sys.executable, "-m", "gcnas.cli.report", f"paths.root={tmp_path}/empty"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "study.storage: sqlite:///" in res.stderr and "Traceback" not in res.stderr
    (tmp_path / "a-file").write_text("")
    res = subprocess.run([sys.executable, "-m", "gcnas.cli.report", f"paths.root={root}",
                          f"study.name={result.study_name}", f"report.dir={tmp_path / 'a-file' / 'sub'}"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert f"gcnas-report: report.dir: cannot write to {tmp_path / 'a-file' / 'sub'}" in res.stderr


def _bare_study(values, vary=True):
    """A study of complete trials with the given values (Optuna's public API, no training)."""
    study = optuna.create_study(direction="maximize")
    for i, v in enumerate(values):
        dist = optuna.distributions.CategoricalDistribution(["a", "b", "c"])
        study.add_trial(optuna.trial.create_trial(params={"design": ["a", "b", "c"][i % 3] if vary else "a"},
                                                  distributions={"design": dist}, value=v))
    return study


@pytest.mark.parametrize("values, vary, why", [
    ([0.5, 0.6], True, "2 complete trials; importances need at least 5"),
    ([0.5] * 6, True, "every complete trial has the same value (0.5): nothing to attribute"),
    ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], False, "no parameter takes more than one value among the complete trials"),
])
def test_importances_are_left_out_with_the_reason_where_they_would_say_nothing(values, vary, why, tmp_path):
    rep = write_report(_bare_study(values, vary), tmp_path / "r", html=False)
    assert "param_importances.png" not in [p.name for p in rep.pictures]
    assert rep.skipped["param_importances"] == why
    assert f"- param_importances: {why}" in rep.summary.read_text()  # the summary says why


def test_importances_are_drawn_where_values_and_parameters_vary(tmp_path):
    rep = write_report(_bare_study([0.1, 0.5, 0.2, 0.6, 0.3, 0.7]), tmp_path / "r", html=False)
    assert "param_importances.png" in [p.name for p in rep.pictures], rep.skipped
    assert "param_importances" not in rep.skipped
