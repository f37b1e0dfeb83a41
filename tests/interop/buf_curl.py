"""Interop: `buf curl` (npm @bufbuild/buf, pinned in package.json) against sessiond.

The schema is the repo's buf module (/work/main/buf.yaml -> proto/), built once into a binary
image so each `buf curl` call does not recompile it. Variants, each for v2 and v2beta:

  connect      --protocol connect   HTTP/1.1 (buf curl's default for http:// URLs)
  connect-h2c  --protocol connect   --http2-prior-knowledge
  grpc         --protocol grpc      --http2-prior-knowledge (gRPC needs HTTP/2; h2c here)
  grpcweb      --protocol grpcweb   HTTP/1.1
  grpcweb-h2c  --protocol grpcweb   --http2-prior-knowledge

The session event feed is called with reflection alone (no schema): WatchSessionEvents
streams over Connect (HTTP/1.1 and h2c), gRPC and gRPC-Web until the deletion made above
shows up, and ListSessionEvents answers a page.

buf curl prints the response message as JSON on stdout; an RPC error goes to stderr as
Connect error JSON and the exit code is 8 * the code number (not_found = 5 -> 40).
On a failed call the same call is repeated with --verbose and both outputs are printed.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
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


FEED_VARIANTS = {
    "connect": ["--protocol", "connect"],
    "connect-h2c": ["--protocol", "connect", "--http2-prior-knowledge"],
    "grpc": ["--protocol", "grpc", "--http2-prior-knowledge"],
    "grpcweb": ["--protocol", "grpcweb"],
}


def json_messages(text: str) -> list[dict]:
    """The JSON objects buf curl printed one after another (each pretty-printed)."""
    decoder = json.JSONDecoder()
    out, at = [], 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at >= len(text):
            return out
        try:
            message, at = decoder.raw_decode(text, at)
        except ValueError:
            return out  # an object still being written
        out.append(message)


def watch_until(server: Sessiond, flags: list[str], session_id: str) -> list[dict]:
    """Runs WatchSessionEvents from the oldest event until `session_id`'s termination."""
    argv = [
        BUF, "curl", *flags, "-H", f"Authorization: Bearer {server.token}",
        "-d", json.dumps({"after": "0"}),
        f"{server.url}/sessiond.events.v1.SessionEventService/WatchSessionEvents",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    text = ""
    deadline = time.monotonic() + 60
    try:
        os.set_blocking(proc.stdout.fileno(), False)
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1)
            if ready:
                chunk = proc.stdout.read()
                if not chunk and proc.poll() is not None:
                    break
                text += chunk or ""
            messages = json_messages(text)
            if any(m.get("sessionId") == session_id and m.get("type") == "SESSION_EVENT_TYPE_TERMINATED"
                   for m in messages):
                return messages
            if proc.poll() is not None and not ready:
                break
        raise AssertionError(
            f"no termination of {session_id} in the stream: exit {proc.poll()} {text!r} "
            f"{proc.stderr.read() if proc.poll() is not None else ''}"
        )
    finally:
        proc.kill()
        proc.wait()


def feed(server: Sessiond, session_id: str) -> None:
    for variant, flags in FEED_VARIANTS.items():
        messages = watch_until(server, flags, session_id)
        ended = [m for m in messages if m.get("sessionId") == session_id]
        check([m.get("type") for m in ended] == ["SESSION_EVENT_TYPE_ADDED", "SESSION_EVENT_TYPE_TERMINATED"],
              f"feed {variant}: events of {session_id}: {ended}")
        check(ended[-1].get("reason") == "TERMINATION_REASON_DELETED", f"feed {variant}: {ended[-1]}")
        check(all(m.get("cursor") for m in messages), f"feed {variant}: an event without a cursor")
        print(f"  ok buf curl feed watch {variant}: {len(messages)} events, reflection only")
    listed = subprocess.run(
        [BUF, "curl", "-H", f"Authorization: Bearer {server.token}", "-d", json.dumps({"after": "0", "limit": 1}),
         f"{server.url}/sessiond.events.v1.SessionEventService/ListSessionEvents"],
        capture_output=True, text=True, timeout=60,
    )
    check(listed.returncode == 0, f"feed list: {listed.stderr}")
    page = json.loads(listed.stdout)
    check(len(page.get("events", [])) == 1 and page.get("nextCursor"), f"feed list: {page}")
    print("  ok buf curl feed list: one event and a next cursor")


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
            wanted = {
                "zitadel.session.v2.SessionService",
                "zitadel.session.v2beta.SessionService",
                "sessiond.events.v1.SessionEventService",
            }
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
            try:
                last = BufCurl(image, server, "v2", VARIANTS["connect"])
                created = last.call("CreateSession", {"checks": {"user": {"loginName": LOGIN_NAME}}})
                last.call("DeleteSession", {"sessionId": created["sessionId"]})
                feed(server, created["sessionId"])
            except (AssertionError, RpcError, KeyError) as e:
                failed = True
                print(f"  FAIL buf curl feed: {e}", file=sys.stderr)
            if failed:
                sys.stderr.write("---- sessiond log (tail) ----\n" + "".join(server.log[-30:]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
