"""Interop: Python `grpcio` (native gRPC, insecure h2c channel) with stubs that grpcio-tools
generates at test time from the repo's proto/ into a temporary directory (pinned in
requirements.txt). Bearer goes in the `authorization` call metadata.

Runs create -> get -> list (userIdQuery, idsQuery) -> delete -> get (NOT_FOUND) for
zitadel.session.v2 and zitadel.session.v2beta, then follows the session event feed
(sessiond.events.v1): WatchSessionEvents streams from the oldest event until both deletions
show up, and ListSessionEvents pages by next_cursor.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path

import grpc
from grpc_tools import protoc

from sessiond_fixture import LOGIN_NAME, PASSWORD, Sessiond, check

HERE = Path(__file__).resolve().parent
PROTO = HERE.parent.parent / "proto"


def generate(out: str) -> None:
    import grpc_tools

    well_known = str(Path(grpc_tools.__file__).parent / "_proto")
    files = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    rc = protoc.main([
        "grpc_tools.protoc", f"-I{PROTO}", f"-I{well_known}",
        f"--python_out={out}", f"--grpc_python_out={out}", *files,
    ])
    if rc != 0:
        raise RuntimeError(f"protoc failed with {rc}")
    # No __init__.py files: the generated zitadel/ and google/api/ stay implicit namespace
    # packages, so google/ merges with protobuf's google.protobuf instead of shadowing it.


def flow(version: str, channel: grpc.Channel, server: Sessiond) -> str:
    pb = importlib.import_module(f"zitadel.session.{version}.session_service_pb2")
    session_pb = importlib.import_module(f"zitadel.session.{version}.session_pb2")
    stub = importlib.import_module(f"zitadel.session.{version}.session_service_pb2_grpc").SessionServiceStub(channel)
    md = [("authorization", f"Bearer {server.token}")]

    created = stub.CreateSession(pb.CreateSessionRequest(checks=pb.Checks(
        user=pb.CheckUser(login_name=LOGIN_NAME),
        password=pb.CheckPassword(password=PASSWORD),
    )), metadata=md, timeout=30)
    sid = created.session_id
    check(bool(sid), f"{version} create: no session_id")
    check(bool(created.session_token), f"{version} create: no session_token")
    check(created.details.HasField("change_date"), f"{version} create: no details.change_date")

    got = stub.GetSession(pb.GetSessionRequest(session_id=sid), metadata=md, timeout=30)
    check(got.session.id == sid, f"{version} get: expected {sid}, got {got.session.id!r}")
    user = got.session.factors.user
    check(user.login_name == LOGIN_NAME and user.id == server.user_id,
          f"{version} get: wrong user factor {user}")

    by_user = stub.ListSessions(pb.ListSessionsRequest(queries=[
        session_pb.SearchQuery(user_id_query=session_pb.UserIDQuery(id=server.user_id))
    ]), metadata=md, timeout=30)
    check(any(s.id == sid for s in by_user.sessions), f"{version} list(userIdQuery): {sid} missing")
    by_id = stub.ListSessions(pb.ListSessionsRequest(queries=[
        session_pb.SearchQuery(ids_query=session_pb.IDsQuery(ids=[sid]))
    ]), metadata=md, timeout=30)
    check([s.id for s in by_id.sessions] == [sid],
          f"{version} list(idsQuery): expected exactly [{sid}], got {[s.id for s in by_id.sessions]}")

    deleted = stub.DeleteSession(pb.DeleteSessionRequest(session_id=sid), metadata=md, timeout=30)
    check(deleted.details.HasField("change_date"), f"{version} delete: no details.change_date")

    try:
        stub.GetSession(pb.GetSessionRequest(session_id=sid), metadata=md, timeout=30)
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.NOT_FOUND,
              f"{version} get after delete: expected NOT_FOUND, got {e.code()} {e.details()}")
    else:
        raise AssertionError(f"{version} get after delete: succeeded, expected NOT_FOUND")
    print(f"  ok grpcio {version} (native gRPC, h2c): session {sid}")
    return sid


def feed(channel: grpc.Channel, server: Sessiond, deleted: list[str]) -> None:
    pb = importlib.import_module("sessiond.events.v1.events_pb2")
    stub = importlib.import_module("sessiond.events.v1.events_pb2_grpc").SessionEventServiceStub(channel)
    md = [("authorization", f"Bearer {server.token}")]
    stream = stub.WatchSessionEvents(pb.WatchSessionEventsRequest(after="0"), metadata=md, timeout=30)
    waiting = set(deleted)
    seen = []
    for event in stream:
        seen.append(event)
        if event.type == pb.SESSION_EVENT_TYPE_TERMINATED and event.session_id in waiting:
            check(event.reason == pb.TERMINATION_REASON_DELETED, f"feed: reason of {event}")
            waiting.discard(event.session_id)
            if not waiting:
                break
    stream.cancel()
    check(not waiting, f"feed watch: no termination of {waiting}")
    cursors = [e.cursor for e in seen]
    check(len(set(cursors)) == len(cursors), "feed watch: an event twice")

    paged, after = [], "0"
    while True:
        page = stub.ListSessionEvents(pb.ListSessionEventsRequest(after=after, limit=1), metadata=md, timeout=30)
        if not page.events:
            break
        paged.extend(page.events)
        after = page.next_cursor
    check([e.cursor for e in paged][: len(cursors)] == cursors, "feed list: pages differ from the watch")
    print(f"  ok grpcio feed: watched {len(seen)} events, listed {len(paged)} one page at a time")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="grpcio-stubs-") as out:
        generate(out)
        sys.path.insert(0, out)
        with Sessiond() as server, grpc.insecure_channel(server.host_port) as channel:
            grpc.channel_ready_future(channel).result(timeout=10)
            deleted = [flow(version, channel, server) for version in ("v2", "v2beta")]
            feed(channel, server, deleted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
