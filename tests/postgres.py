"""A throw-away PostgreSQL server for the tests: Debian's server binaries, initdb as the ``postgres`` user, a free
loopback port, a temporary data directory; stopped (and deleted) when the test session ends."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

from processes import free_port

PASSWORD = "s3cret-pw-4t2"  # trust authentication on loopback accepts it; the tests grep outputs for it


def _bindir() -> Optional[Path]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class PostgresServer:
    def __init__(self) -> None:
        self.bindir = _bindir()
        self.dir: Optional[Path] = None
        self.port = 0

    def _as_postgres(self, *cmd: str) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=120)

    def start(self) -> str:
        """Start the server; returns why it cannot start ('' on success)."""
        if self.bindir is None:
            return "PostgreSQL server binaries are not installed (make test installs Debian's postgresql package)"
        self.dir = Path(tempfile.mkdtemp(prefix="gcnas-pg-"))
        self.dir.chmod(0o755)
        data, sock = self.dir / "data", self.dir / "sock"
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        for step in ([str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],):
            res = self._as_postgres(*step)
            if res.returncode != 0:
                return f"initdb failed: {res.stderr.strip()[-500:]}"
        self._as_postgres("mkdir", "-p", str(sock))
        self.port = free_port()
        res = self._as_postgres(str(self.bindir / "pg_ctl"), "-D", str(data), "-w", "-t", "60", "-l",
                                str(self.dir / "server.log"), "-o",
                                f"-p {self.port} -k {sock} -c listen_addresses=127.0.0.1 -c max_connections=200 "
                                f"-c fsync=off", "start")
        if res.returncode != 0:
            return f"pg_ctl start failed: {res.stderr.strip()[-500:]}"
        return ""

    def create_database(self, name: str) -> str:
        res = self._as_postgres(str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                                "postgres", name)
        if res.returncode != 0:
            raise RuntimeError(res.stderr)
        return f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.dir is None:
            return
        self._as_postgres(str(self.bindir / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
