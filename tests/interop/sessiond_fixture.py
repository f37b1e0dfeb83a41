"""Starts a throw-away sessiond for one interop client script.

Each script gets its own data directory, user `alice` (password `password123`), a bearer
token with every session permission, and a port chosen by the OS (`--listen 127.0.0.1:0`;
the bound address is read from the JSON "listening" log line, so there is no port race).

The binary comes from $SESSIOND_BIN (run.sh sets it), else ../../target/debug/sessiond.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOGIN_NAME = "alice"
PASSWORD = "password123"


def binary() -> str:
    path = os.environ.get("SESSIOND_BIN") or str(HERE.parent.parent / "target/debug/sessiond")
    if not os.access(path, os.X_OK):
        sys.exit(f"sessiond binary not found or not executable: {path}")
    return path


class Sessiond:
    """Context manager: `with Sessiond() as s:` gives s.url, s.host_port, s.token, s.user_id."""

    def __init__(self, serve_args: tuple[str, ...] = (),
                 permissions: str = "session.read,session.write,session.delete") -> None:
        self.bin = binary()
        self.serve_args = serve_args
        self.permissions = permissions
        self.data_dir = ""
        self.proc: subprocess.Popen[str] | None = None
        self.log: list[str] = []
        self.url = ""
        self.host_port = ""
        self.token = ""
        self.user_id = ""

    def _run(self, *args: str, stdin: str | None = None) -> str:
        out = subprocess.run(
            [self.bin, *args, "--data-dir", self.data_dir],
            input=stdin,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return out.stdout.strip()

    def __enter__(self) -> "Sessiond":
        self.data_dir = tempfile.mkdtemp(prefix="sessiond-interop-")
        self.user_id = self._run(
            "users", "add", "--login-name", LOGIN_NAME, "--password-stdin", stdin=PASSWORD + "\n"
        ).splitlines()[-1]
        self.token = self._run(
            "token", "mint", "--subject", "admin",
            "--permissions", self.permissions,
        )
        self.proc = subprocess.Popen(
            [self.bin, "serve", "--data-dir", self.data_dir, "--listen", "127.0.0.1:0",
             "--log-format", "json", *self.serve_args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        address = self._wait_for_address()
        threading.Thread(target=self._drain, daemon=True).start()
        self.host_port = address
        self.url = f"http://{address}"
        return self

    def _wait_for_address(self) -> str:
        assert self.proc is not None and self.proc.stderr is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError("sessiond exited before listening:\n" + "".join(self.log))
            self.log.append(line)
            try:
                fields = json.loads(line).get("fields", {})
            except ValueError:
                continue
            if "listening" in fields.get("message", "") and fields.get("address"):
                return fields["address"]
        raise RuntimeError("sessiond did not report its address in 30 s")

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if exc_type is not None and self.log:
            sys.stderr.write("---- sessiond log (tail) ----\n" + "".join(self.log[-30:]))
        shutil.rmtree(self.data_dir, ignore_errors=True)


def check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)
