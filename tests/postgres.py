"""A real PostgreSQL server for the ledger tests: Debian's ``postgresql`` (installed by ``make
test``), started in a temporary directory, listening on a unix socket only, and run as the
``postgres`` user when the tests run as root (the server refuses to run as root)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _version(path: str) -> int:
    part = Path(path).parts[-3]
    return int(part) if part.isdigit() else 0


def require_postgres() -> Path:
    """The directory of PostgreSQL's server programs; a failure under CI=true, else a skip."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is not installed, and under CI=true that is a failure")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    return bin_dir


class PostgresServer:
    """One server in its own directory; ``stop`` and ``start`` take it down and up again with
    the same data, as an outage would."""

    def __init__(self, bin_dir: Path) -> None:
        self._bin = bin_dir
        self.directory = Path(tempfile.mkdtemp(prefix="hcert-pg-"))
        self._user = "postgres" if os.geteuid() == 0 else None
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        self._data = self.directory / "data"
        self._run(
            "initdb", "-D", str(self._data), "-U", "postgres", "-A", "trust", "--no-sync", "-E",
            "UTF8",
        )  # fmt: skip
        self.start()

    @property
    def socket_dir(self) -> Path:
        return self.directory

    def start(self) -> None:
        options = f"-k {self.directory} -c listen_addresses='' -p 5432"
        self._run(
            "pg_ctl", "-D", str(self._data), "-o", options, "-l",
            str(self.directory / "server.log"), "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self._data), "-m", "fast", "-w", "stop")

    def url(self, database: str) -> str:
        return f"postgresql:///{database}?host={self.directory}&user=postgres"

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = f"ledger_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _run(self, program: str, *args: str) -> None:
        command = [str(self._bin / program), *args]
        if self._user is not None:
            command = ["runuser", "-u", self._user, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            log = self.directory / "server.log"
            raise RuntimeError(
                f"{program} failed ({result.returncode}): {result.stdout}{result.stderr}"
                + (log.read_text() if log.exists() else "")
            )
