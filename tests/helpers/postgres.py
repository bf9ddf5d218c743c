"""A throwaway PostgreSQL server on loopback for the distributed-study tests (Debian's binaries)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def find_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """initdb + pg_ctl in a temporary folder; as root, the server runs as the 'postgres' system user."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: the 'postgres' user must be able to reach the folder.
        self.folder = Path(tempfile.mkdtemp(prefix="archsearch-pg-"))
        self.port = _free_port()
        self.data = self.folder / "data"
        self.user, self.password, self.database = "archsearch", "s3cret", "archsearch"

    def _run(self, *cmd: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        env = {**os.environ, "PGPASSWORD": self.password}
        subprocess.run([*prefix, *cmd], check=True, capture_output=True, text=True, env=env)

    def start(self) -> str:
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        pwfile = self.folder / "pw"
        pwfile.write_text(self.password)
        pwfile.chmod(0o644)
        self._run(find_bin("initdb"), "-D", str(self.data), "-U", self.user, "--pwfile", str(pwfile),
                  "--auth-host=scram-sha-256", "--auth-local=trust")
        self._run(find_bin("pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.folder / "log"), "-o",
                  f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1", "start")
        self._run(find_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, self.database)
        return self.url

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def stop(self) -> None:
        self._run(find_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)
