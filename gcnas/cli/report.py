"""``gcnas-report``: a study's pictures (Optuna's plots and where the blocks go) and a Markdown summary."""
from __future__ import annotations

import importlib
import signal
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

import hydra
from omegaconf import DictConfig

from gcnas.cli.common import require_study, resolve, user_errors
from gcnas.cli.args import ReportArgs
from gcnas.cli.search import DASHBOARD_EXTRA
from gcnas.errors import ConfigError
from gcnas.schema import read

if TYPE_CHECKING:
    from gcnas.report import Report

# The command's work (torch, timm, Optuna, W&B) is imported where it runs, so that --help starts in about a second.


DASHBOARD_PORT = 8080  # report.dashboard=true: optuna-dashboard's own default port


def dashboard_port(value: Union[bool, int]) -> Optional[int]:
    """The port ``report.dashboard`` asks for (None: no dashboard), refused before any work where optuna-dashboard
    is not installed or the port is taken on 127.0.0.1."""
    if value is False:
        return None
    port = DASHBOARD_PORT if value is True else int(value)
    try:
        importlib.import_module("optuna_dashboard")
    except ImportError:
        raise ConfigError(f"report.dashboard={str(value).lower()}: optuna-dashboard is not installed; "
                          f"{DASHBOARD_EXTRA}, or leave report.dashboard=false") from None
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: a port in TIME_WAIT is free
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            other = port + 1 if port < 65535 else port - 1
            raise ConfigError(f"report.dashboard={str(value).lower()}: port {port} on 127.0.0.1 cannot be used "
                              f"({e.strerror}); give another, e.g. report.dashboard={other}") from None
    return port


def serve_dashboard(url: str, name: str, port: int) -> None:
    """Serve the storage with optuna-dashboard (its WSGI app, on the standard library's server) on 127.0.0.1:``port``
    until Ctrl-C or SIGTERM."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from optuna_dashboard import wsgi

    from gcnas.search.study import make_storage

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args) -> None:  # the page polls the API every few seconds: no line per request
            pass

    server = make_server("127.0.0.1", port, wsgi(make_storage(url)), handler_class=Quiet)
    print(f"Dashboard of {name}: http://127.0.0.1:{port}/dashboard/ (Ctrl-C stops it; from another machine: "
          f"ssh -L {port}:127.0.0.1:{port} <this host>)", flush=True)
    # The server answers on a thread of its own and the signals only set `stop`: raised while a request was being
    # answered, Ctrl-C would be caught by wsgiref's handler, which logs any exception and serves on. Set here, as a
    # process started in the background by a shell inherits SIGINT ignored.
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    serving.start()
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:  # where no handler could be set
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.shutdown()
        server.server_close()
    print("Dashboard stopped.", flush=True)


def report(cfg: DictConfig) -> Report:
    """Write the report from a composed ``report`` config (tests call this with ``hydra.compose``); with
    ``report.dashboard``, then serve the study's dashboard until Ctrl-C."""
    from gcnas.search.study import open_study

    c = resolve(cfg)
    name, url = require_study(c)
    rc = read(ReportArgs, c.get("report"), "report")
    port = dashboard_port(rc.dashboard)
    study = open_study(url, name)
    from gcnas.report import write_report  # torch and matplotlib: after the input is checked
    out = Path(rc.dir or Path(c["paths"]["root"]) / name / "report")
    rep = write_report(study, out, top_k=rc.top_k, html=None if rc.html == "auto" else rc.html, storage=url)
    print(f"Report of {name} in {rep.dir}/: {rep.summary.name}, "
          + ", ".join(p.name for p in rep.pictures + rep.html))
    for what, why in rep.skipped.items():
        print(f"  not drawn: {what} ({why})")
    if port is not None:
        serve_dashboard(url, name, port)
    return rep


@hydra.main(version_base="1.3", config_path="pkg://gcnas.conf", config_name="report")
@user_errors("gcnas-report")
def main(cfg: DictConfig) -> None:
    report(cfg)


if __name__ == "__main__":
    main()
