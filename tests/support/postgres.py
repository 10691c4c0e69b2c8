"""A throwaway PostgreSQL server for tests: initdb into a temporary folder, pg_ctl on a free loopback port.

Debian's `postgresql` package provides the binaries (scripts/test.sh installs it if missing). initdb refuses to
run as root, so as root the server runs as the `postgres` user the package creates. `stop()` and `start()` can be
called again mid-test (the journal test takes the store away for a while and brings it back).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from tests.support import local


def _bindir() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


def available() -> str | None:
    """None if a server can be started here, else why not (for pytest.skip / a clear failure)."""
    if _bindir() is None:
        return "PostgreSQL is not installed (apt-get install postgresql; scripts/test.sh does it)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[postgres]'; scripts/test.sh does it)"
    return None


def require() -> None:
    """Skip the calling test if no server can be started here; fail it under CI, where the README's test command
    installs PostgreSQL, so a missing server is a broken set-up and not a reason to test less."""
    local.require("PostgreSQL", available())


class PostgresServer:
    def __init__(self, root: Path | None = None) -> None:
        bindir = _bindir()
        if bindir is None:
            raise RuntimeError(available() or "no PostgreSQL")
        self.bindir = bindir
        self.root = Path(root or tempfile.mkdtemp(prefix="wb-pg-"))
        self.data = self.root / "data"
        self.port = local.free_port()
        self._as_postgres = os.geteuid() == 0

    # -- process control ----------------------------------------------------------------------------------------
    def _run(self, *args: str) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        if not self.data.exists():
            self.init()
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)

    # -- databases ----------------------------------------------------------------------------------------------
    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = name or f"wb_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
