"""Interop: `buf curl` (npm @bufbuild/buf, pinned in package.json) against sessiond.

The schema is the repo's buf module (/work/main/buf.yaml -> proto/), built once into a binary
image so each `buf curl` call does not recompile it. Variants, each for v2 and v2beta:

  connect      --protocol connect   HTTP/1.1 (buf curl's default for http:// URLs)
  connect-h2c  --protocol connect   --http2-prior-knowledge
  grpc         --protocol grpc      --http2-prior-knowledge (gRPC needs HTTP/2; h2c here)
  grpcweb      --protocol grpcweb   HTTP/1.1
  grpcweb-h2c  --protocol grpcweb   --http2-prior-knowledge

buf curl prints the response message as JSON on stdout; an RPC error goes to stderr as
Connect error JSON and the exit code is 8 * the code number (not_found = 5 -> 40).
On a failed call the same call is repeated with --verbose and both outputs are printed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from sessiond_fixture import LOGIN_NAME, PASSWORD, Sessiond, check

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BUF = str(HERE / "node_modules/.bin/buf")

VARIANTS = {
    "connect": ["--protocol", "connect"],
    "connect-h2c": ["--protocol", "connect", "--http2-prior-knowledge"],
    "grpc": ["--protocol", "grpc", "--http2-prior-knowledge"],
    "grpcweb": ["--protocol", "grpcweb"],
    "grpcweb-h2c": ["--protocol", "grpcweb", "--http2-prior-knowledge"],
}


class RpcError(Exception):
    def __init__(self, exit_code: int, error: dict, stderr: str) -> None:
        super().__init__(f"exit {exit_code}: {stderr.strip()}")
        self.exit_code = exit_code
        self.error = error


class BufCurl:
    def __init__(self, schema: str, server: Sessiond, version: str, flags: list[str]) -> None:
        self.schema = schema
        self.server = server
        self.version = version
        self.flags = flags

    def _argv(self, method: str, body: dict) -> list[str]:
        return [
            BUF, "curl", "--schema", self.schema, *self.flags,
            "-H", f"Authorization: Bearer {self.server.token}",
            "-d", json.dumps(body),
            f"{self.server.url}/zitadel.session.{self.version}.SessionService/{method}",
        ]

    def call(self, method: str, body: dict, expect_error: bool = False) -> dict:
        argv = self._argv(method, body)
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if out.returncode == 0:
            return json.loads(out.stdout)
        try:
            error = json.loads(out.stderr)
        except ValueError:
            error = {}
        if not (expect_error and error.get("code")):
            verbose = subprocess.run(
                argv[:2] + ["--verbose"] + argv[2:], capture_output=True, text=True, timeout=60
            )
            sys.stderr.write(
                f"---- buf curl {method} failed (exit {out.returncode}) ----\n"
                f"{out.stdout}{out.stderr}\n---- same call with --verbose ----\n"
                f"{verbose.stdout}{verbose.stderr}\n"
            )
        raise RpcError(out.returncode, error, out.stderr)


def flow(label: str, buf: BufCurl, server: Sessiond) -> None:
    created = buf.call("CreateSession", {
        "checks": {"user": {"loginName": LOGIN_NAME}, "password": {"password": PASSWORD}},
    })
    sid = created.get("sessionId")
    check(bool(sid), f"{label} create: no sessionId in {created}")
    check(bool(created.get("sessionToken")), f"{label} create: no sessionToken in {created}")
    check(bool(created.get("details", {}).get("changeDate")), f"{label} create: no details.changeDate")

    got = buf.call("GetSession", {"sessionId": sid})
    session = got.get("session", {})
    check(session.get("id") == sid, f"{label} get: expected {sid}, got {got}")
    user = session.get("factors", {}).get("user", {})
    check(user.get("loginName") == LOGIN_NAME and user.get("id") == server.user_id,
          f"{label} get: wrong user factor {user}")

    by_user = buf.call("ListSessions", {"queries": [{"userIdQuery": {"id": server.user_id}}]})
    check(any(s.get("id") == sid for s in by_user.get("sessions", [])),
          f"{label} list(userIdQuery): {sid} missing in {by_user}")
    by_id = buf.call("ListSessions", {"queries": [{"idsQuery": {"ids": [sid]}}]})
    check([s.get("id") for s in by_id.get("sessions", [])] == [sid],
          f"{label} list(idsQuery): expected exactly [{sid}], got {by_id}")

    deleted = buf.call("DeleteSession", {"sessionId": sid})
    check(bool(deleted.get("details", {}).get("changeDate")), f"{label} delete: no details in {deleted}")

    try:
        buf.call("GetSession", {"sessionId": sid}, expect_error=True)
    except RpcError as e:
        check(e.error.get("code") == "not_found" and e.exit_code == 5 * 8,
              f"{label} get after delete: expected not_found (exit 40), got exit {e.exit_code} {e.error}")
    else:
        raise AssertionError(f"{label} get after delete: succeeded, expected NotFound")
    print(f"  ok buf curl {label}: session {sid}")


def main() -> int:
    failed = False
    with tempfile.TemporaryDirectory(prefix="buf-image-") as tmp:
        image = f"{tmp}/sessiond.binpb"
        subprocess.run([BUF, "build", str(REPO), "-o", image], check=True, timeout=120)
        with Sessiond() as server:
            # Reflection with buf curl's defaults (Connect over HTTP/1.1), no proto files.
            listed = subprocess.run(
                [BUF, "curl", "--list-services", server.url],
                capture_output=True, text=True, timeout=60,
            )
            services = set(listed.stdout.split())
            wanted = {"zitadel.session.v2.SessionService", "zitadel.session.v2beta.SessionService"}
            if listed.returncode != 0 or not wanted <= services:
                failed = True
                print(f"  FAIL buf curl --list-services: {listed.returncode} {listed.stdout!r} {listed.stderr!r}", file=sys.stderr)
            for variant, flags in VARIANTS.items():
                for version in ("v2", "v2beta"):
                    label = f"{version} {variant}"
                    try:
                        flow(label, BufCurl(image, server, version, flags), server)
                    except (AssertionError, RpcError) as e:
                        failed = True
                        print(f"  FAIL buf curl {label}: {e}", file=sys.stderr)
            if failed:
                sys.stderr.write("---- sessiond log (tail) ----\n" + "".join(server.log[-30:]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
