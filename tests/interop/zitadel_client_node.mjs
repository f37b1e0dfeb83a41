// Interop: the official ZITADEL TypeScript SDK (npm @zitadel/client, pinned in package.json).
//
// Transports exercised, each for v2 and v2beta:
//   grpc          createServerTransport(token, {httpVersion: "2"})  (SDK's Node transport:
//                 connect-node createGrpcTransport, h2c prior knowledge)
//   grpc-web      createClientTransport(token, {})                  (SDK's web transport:
//                 connect-web createGrpcWebTransport over Node's fetch, HTTP/1.1)
//   grpc-web-h2   connect-node createGrpcWebTransport, HTTP/2 (h2c)
//   connect-json  connect-node createConnectTransport, HTTP/1.1, JSON (unknown response fields
//                 rejected, so the JSON must match ZITADEL's published schema)
//   connect-proto connect-node createConnectTransport, HTTP/2 (h2c), binary
// The last three are not wrapped by the SDK; they use its NewAuthorizationBearerInterceptor.
// The v2 client is the SDK's createSessionServiceClient (@zitadel/client/v2); the SDK exports no
// v2beta client, so v2beta uses its createClientFor() with @zitadel/proto's v2beta descriptor.

import { createClientFor, NewAuthorizationBearerInterceptor } from "@zitadel/client";
import { createSessionServiceClient } from "@zitadel/client/v2";
import { createServerTransport } from "@zitadel/client/node";
import { createClientTransport } from "@zitadel/client/web";
import { SessionService as SessionServiceV2beta } from "@zitadel/proto/zitadel/session/v2beta/session_service_pb.js";
// @zitadel/client 1.3.1's index.d.ts re-exports Code and ConnectError, but its index.js does not
// (a runtime SyntaxError on import), so they come from @connectrpc/connect directly.
import { Code, ConnectError } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";

import { startSessiond, check, LOGIN_NAME, PASSWORD } from "./lib/sessiond.mjs";

const transports = {
  grpc: (s) => createServerTransport(s.token, { baseUrl: s.url, httpVersion: "2" }),
  "grpc-web": (s) => createClientTransport(s.token, { baseUrl: s.url }),
  "grpc-web-h2": (s) =>
    createGrpcWebTransport({
      baseUrl: s.url,
      httpVersion: "2",
      interceptors: [NewAuthorizationBearerInterceptor(s.token)],
    }),
  "connect-json": (s) =>
    createConnectTransport({
      baseUrl: s.url,
      httpVersion: "1.1",
      // Strict: every JSON field sessiond sends must exist in ZITADEL's published schema
      // (@zitadel/proto); connect-es ignores unknown fields by default.
      jsonOptions: { ignoreUnknownFields: false },
      interceptors: [NewAuthorizationBearerInterceptor(s.token)],
    }),
  "connect-proto": (s) =>
    createConnectTransport({
      baseUrl: s.url,
      httpVersion: "2",
      useBinaryFormat: true,
      interceptors: [NewAuthorizationBearerInterceptor(s.token)],
    }),
};

const clients = {
  v2: (t) => createSessionServiceClient(t),
  v2beta: createClientFor(SessionServiceV2beta),
};

async function flow(label, client, server) {
  const created = await client.createSession({
    checks: { user: { search: { case: "loginName", value: LOGIN_NAME } }, password: { password: PASSWORD } },
  });
  const sid = created.sessionId;
  check(sid, `${label} create: no sessionId`);
  check(created.sessionToken, `${label} create: no sessionToken`);
  check(created.details?.changeDate, `${label} create: no details.changeDate`);

  const got = await client.getSession({ sessionId: sid });
  check(got.session?.id === sid, `${label} get: expected ${sid}, got ${got.session?.id}`);
  const user = got.session.factors?.user;
  check(user?.loginName === LOGIN_NAME && user?.id === server.userId, `${label} get: wrong user factor ${user?.id}/${user?.loginName}`);
  check(got.session.factors?.password?.verifiedAt, `${label} get: password not verified`);

  const byUser = await client.listSessions({
    queries: [{ query: { case: "userIdQuery", value: { id: server.userId } } }],
  });
  check(byUser.sessions.some((s) => s.id === sid), `${label} list(userIdQuery): ${sid} missing`);
  const byId = await client.listSessions({ queries: [{ query: { case: "idsQuery", value: { ids: [sid] } } }] });
  check(
    byId.sessions.length === 1 && byId.sessions[0].id === sid,
    `${label} list(idsQuery): expected exactly [${sid}], got ${byId.sessions.map((s) => s.id)}`,
  );

  const deleted = await client.deleteSession({ sessionId: sid });
  check(deleted.details?.changeDate, `${label} delete: no details.changeDate`);

  let error;
  try {
    await client.getSession({ sessionId: sid });
  } catch (e) {
    error = ConnectError.from(e);
  }
  check(error, `${label} get after delete: succeeded, expected NotFound`);
  check(error.code === Code.NotFound, `${label} get after delete: expected NotFound, got ${Code[error.code]}: ${error.message}`);
  console.log(`  ok @zitadel/client ${label}: session ${sid}`);
}

const server = await startSessiond();
let failed = false;
try {
  for (const [tname, makeTransport] of Object.entries(transports)) {
    for (const [version, makeClient] of Object.entries(clients)) {
      const label = `${version} ${tname}`;
      try {
        await flow(label, makeClient(makeTransport(server)), server);
      } catch (e) {
        failed = true;
        console.error(`  FAIL @zitadel/client ${label}: ${e instanceof ConnectError ? `[${Code[e.code]}] ${e.rawMessage}` : e.message}`);
      }
    }
  }
} finally {
  await server.stop(failed);
}
process.exit(failed ? 1 : 0);
