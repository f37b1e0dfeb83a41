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
//
// Then, over every transport, second factors: the user registers TOTP with its own session
// token (createUserServiceClient: RegisterTOTP, VerifyTOTPRegistration with an `otpauth`
// code) and the session passes `checks.totp` in SetSession once; the same code again is
// refused. Last, one-time codes by email against a server that sends them to an SMTP sink
// (smtp_sink.py, aiosmtpd): AddHumanUser with a verified email and AddOTPEmail, then on every
// transport CreateSession with an email challenge, the code read from the received mail and
// checked in SetSession once; the same code again is refused.

import { createClientFor, NewAuthorizationBearerInterceptor } from "@zitadel/client";
import { createSessionServiceClient, createUserServiceClient } from "@zitadel/client/v2";
import { Secret, TOTP } from "otpauth";
import { createServerTransport } from "@zitadel/client/node";
import { createClientTransport } from "@zitadel/client/web";
import { SessionService as SessionServiceV2beta } from "@zitadel/proto/zitadel/session/v2beta/session_service_pb.js";
// @zitadel/client 1.3.1's index.d.ts re-exports Code and ConnectError, but its index.js does not
// (a runtime SyntaxError on import), so they come from @connectrpc/connect directly.
import { Code, ConnectError } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";

import { startSessiond, startSmtpSink, check, LOGIN_NAME, PASSWORD } from "./lib/sessiond.mjs";

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

async function totpFlow(label, makeTransport, server) {
  const sessions = createSessionServiceClient(makeTransport(server));
  const created = await sessions.createSession({
    checks: { user: { search: { case: "loginName", value: LOGIN_NAME } }, password: { password: PASSWORD } },
  });
  const users = createUserServiceClient(makeTransport({ ...server, token: created.sessionToken }));
  // Each run starts over: a TOTP left verified by the transport before is removed first.
  try {
    await users.removeTOTP({ userId: server.userId });
  } catch (e) {
    check(ConnectError.from(e).code === Code.NotFound, `${label} removeTOTP: ${e.message}`);
  }
  const registered = await users.registerTOTP({ userId: server.userId });
  check(registered.uri.startsWith("otpauth://totp/"), `${label} registerTOTP: uri ${registered.uri}`);
  const totp = new TOTP({ secret: Secret.fromBase32(registered.secret), digits: 6, period: 30, algorithm: "SHA1" });
  const now = Date.now();
  await users.verifyTOTPRegistration({ userId: server.userId, code: totp.generate({ timestamp: now }) });
  // The verifying code is spent; the next step's code is within the skew.
  const code = totp.generate({ timestamp: now + 30_000 });
  await sessions.setSession({ sessionId: created.sessionId, checks: { totp: { code } } });
  let error;
  try {
    await sessions.setSession({ sessionId: created.sessionId, checks: { totp: { code } } });
  } catch (e) {
    error = ConnectError.from(e);
  }
  check(error?.code === Code.InvalidArgument, `${label} replayed TOTP code: expected InvalidArgument, got ${error ? Code[error.code] : "success"}`);
  const got = await sessions.getSession({ sessionId: created.sessionId });
  check(got.session.factors?.totp?.verifiedAt, `${label} factors.totp not verified`);
  console.log(`  ok @zitadel/client ${label}: TOTP enrolled and checked on session ${created.sessionId}`);
}

async function emailCodeFlow(label, makeTransport, server, sink, userId) {
  const sessions = createSessionServiceClient(makeTransport(server));
  const created = await sessions.createSession({
    checks: { user: { search: { case: "userId", value: userId } } },
    challenges: {
      otpEmail: {
        deliveryType: {
          case: "sendCode",
          value: { urlTemplate: "https://login.example/otp?code={{.Code}}&user={{.UserID}}&session={{.SessionID}}" },
        },
      },
    },
  });
  check(!created.challenges?.otpEmail, `${label} the code came back although it was to be sent`);
  const mail = await sink.next();
  check(mail.to.includes("grace@example.com"), `${label} email sent to ${mail.to}`);
  const found = new RegExp(`code=(\\d{8})&user=${userId}&session=${created.sessionId}`).exec(mail.text);
  check(found, `${label} no code link for this session in the email:\n${mail.text}`);
  const code = found[1];
  await sessions.setSession({ sessionId: created.sessionId, checks: { otpEmail: { code } } });
  let error;
  try {
    await sessions.setSession({ sessionId: created.sessionId, checks: { otpEmail: { code } } });
  } catch (e) {
    error = ConnectError.from(e);
  }
  check(
    error?.code === Code.FailedPrecondition,
    `${label} reused email code: expected FailedPrecondition, got ${error ? Code[error.code] : "success"}`,
  );
  const got = await sessions.getSession({ sessionId: created.sessionId });
  check(got.session.factors?.otpEmail?.verifiedAt, `${label} factors.otpEmail not verified`);
  console.log(`  ok @zitadel/client ${label}: email code by SMTP checked on session ${created.sessionId}`);
}

// A server sending email to the sink; a user with a verified email and OTP email, added
// through the SDK's UserService client; the email flow on every transport.
async function emailCodes() {
  let failed = false;
  const sink = await startSmtpSink();
  const server = await startSessiond({
    serveArgs: ["--smtp-host", "127.0.0.1", "--smtp-port", String(sink.port), "--smtp-security", "plain"],
    permissions: "session.read,session.write,session.delete,user.read,user.write",
  });
  try {
    const users = createUserServiceClient(transports.grpc(server));
    const { userId } = await users.addHumanUser({
      username: "grace@example.com",
      profile: { givenName: "Grace", familyName: "Hopper" },
      email: { email: "grace@example.com", verification: { case: "isVerified", value: true } },
      passwordType: { case: "password", value: { password: "Correct-horse-9" } },
    });
    await users.addOTPEmail({ userId });
    for (const [tname, makeTransport] of Object.entries(transports)) {
      const label = `v2 ${tname} email code`;
      try {
        await emailCodeFlow(label, makeTransport, server, sink, userId);
      } catch (e) {
        failed = true;
        console.error(`  FAIL @zitadel/client ${label}: ${e instanceof ConnectError ? `[${Code[e.code]}] ${e.rawMessage}` : e.message}`);
      }
    }
  } catch (e) {
    failed = true;
    console.error(`  FAIL @zitadel/client email codes: ${e instanceof ConnectError ? `[${Code[e.code]}] ${e.rawMessage}` : e.message}`);
  } finally {
    await server.stop(failed);
    await sink.stop();
  }
  return failed;
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
  for (const [tname, makeTransport] of Object.entries(transports)) {
    const label = `v2 ${tname} TOTP`;
    try {
      await totpFlow(label, makeTransport, server);
    } catch (e) {
      failed = true;
      console.error(`  FAIL @zitadel/client ${label}: ${e instanceof ConnectError ? `[${Code[e.code]}] ${e.rawMessage}` : e.message}`);
    }
  }
} finally {
  await server.stop(failed);
}
failed = (await emailCodes()) || failed;
process.exit(failed ? 1 : 0);
