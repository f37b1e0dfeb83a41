// Interop: the official Ory Kratos TypeScript SDK (npm @ory/kratos-client, pinned in
// package.json) against sessiond's self-service face, FrontendApi with base path `…/auth`:
//
//   toSession              GET    /auth/sessions/whoami  (X-Session-Token, and the Cookie header)
//   listMySessions         GET    /auth/sessions         (pageSize, following the Link header's
//                                                          page_token until no rel="next" is left)
//   disableMySession       DELETE /auth/sessions/{id}    (204; the current session → 400)
//   disableMyOtherSessions DELETE /auth/sessions         ({count})
//
// and IdentityApi (the admin session API, with the fixture's bearer token as its API key):
//
//   listSessions           GET    /auth/admin/sessions   (pageSize, active, expand, along the Link
//                                                          header's rel="next")
//   getSession             GET    /auth/admin/sessions/{id}          (expand; unknown → 404)
//   extendSession          PATCH  /auth/admin/sessions/{id}/extend   (204)
//   disableSession         DELETE /auth/admin/sessions/{id}          (204, again 204)
//   listIdentitySessions   GET    /auth/admin/identities/{id}/sessions
//   deleteIdentitySessions DELETE /auth/admin/identities/{id}/sessions (204, again 204)
//
// and FrontendApi's native login (no bearer):
//
//   createNativeLoginFlow  GET    /auth/self-service/login/api
//   updateLoginFlow        POST   /auth/self-service/login?flow=… (password; wrong → 400 with the
//                                                                   flow; unknown flow → 404)
//
// The sessions are created through the SessionService's REST face (POST /v2/sessions) with the
// fixture's bearer token, as a login UI would; their sessionTokens identify the user here.

import { Configuration, FrontendApi, IdentityApi } from "@ory/kratos-client";

import { startSessiond, check, LOGIN_NAME, PASSWORD } from "./lib/sessiond.mjs";

const OTHERS = 7;
const PAGE_SIZE = 3;

async function createSession(server, userAgent) {
  const response = await fetch(`${server.url}/v2/sessions`, {
    method: "POST",
    headers: { authorization: `Bearer ${server.token}`, "content-type": "application/json" },
    body: JSON.stringify({
      checks: { user: { loginName: LOGIN_NAME }, password: { password: PASSWORD } },
      lifetime: "3600s",
      userAgent,
    }),
  });
  const body = await response.json();
  check(response.status === 201, `POST /v2/sessions: ${response.status} ${JSON.stringify(body)}`);
  return { id: body.sessionId, token: body.sessionToken };
}

/** The page_token of the Link header's rel="next" entry, or null on the last page. */
function nextPageToken(link) {
  if (!link) return null;
  for (const entry of link.split(",")) {
    const match = entry.match(/<([^>]*)>\s*;\s*rel="next"/);
    if (match) {
      const token = new URL(match[1], "http://placeholder").searchParams.get("page_token");
      check(token, `rel="next" without page_token: ${link}`);
      return token;
    }
  }
  return null;
}

/** Runs `call`, which must fail with this HTTP status and a Kratos error body. */
async function expectError(label, status, call) {
  let error;
  try {
    await call();
  } catch (e) {
    error = e;
  }
  check(error?.response, `${label}: expected HTTP ${status}, got ${error ? error.message : "success"}`);
  const { status: got, data } = error.response;
  check(got === status, `${label}: expected HTTP ${status}, got ${got} ${JSON.stringify(data)}`);
  check(data?.error?.code === status, `${label}: error.code ${JSON.stringify(data)}`);
  check(typeof data.error.message === "string" && data.error.status, `${label}: error shape ${JSON.stringify(data)}`);
  return data.error;
}

async function flow(server) {
  const current = await createSession(server, {
    ip: "192.0.2.10",
    header: { "user-agent": { values: ["kratos-client-node interop"] } },
  });
  const others = [];
  for (let i = 0; i < OTHERS; i++) others.push(await createSession(server, { description: `device ${i}` }));

  const frontend = new FrontendApi(new Configuration({ basePath: `${server.url}/auth` }));
  const xSessionToken = current.token;

  // toSession, by header and by cookie.
  const me = await frontend.toSession({ xSessionToken });
  check(me.status === 200, `toSession: status ${me.status}`);
  check(me.data.id === current.id, `toSession: id ${me.data.id}, expected ${current.id}`);
  check(me.data.active === true, "toSession: not active");
  check(me.data.identity?.id === server.userId, `toSession: identity ${me.data.identity?.id}`);
  check(me.data.identity?.traits?.login_name === LOGIN_NAME, `toSession: traits ${JSON.stringify(me.data.identity?.traits)}`);
  check(me.data.authenticator_assurance_level === "aal1", `toSession: aal ${me.data.authenticator_assurance_level}`);
  check(me.data.authentication_methods?.some((m) => m.method === "password"), "toSession: no password method");
  check(me.data.devices?.[0]?.user_agent === "kratos-client-node interop", `toSession: devices ${JSON.stringify(me.data.devices)}`);
  check(me.headers["x-kratos-authenticated-identity-id"] === server.userId, "toSession: no X-Kratos-Authenticated-Identity-Id");
  const byCookie = await frontend.toSession({ cookie: `sessiond_session=${current.token}` });
  check(byCookie.data.id === current.id, `toSession(cookie): id ${byCookie.data.id}`);
  console.log(`  ok toSession: ${me.data.id} (header and cookie)`);

  // listMySessions, page by page along the Link header.
  const seen = new Map();
  let pageToken;
  let pages = 0;
  for (;;) {
    const page = await frontend.listMySessions({ xSessionToken, pageSize: PAGE_SIZE, pageToken });
    check(page.status === 200, `listMySessions: status ${page.status}`);
    check(page.data.length <= PAGE_SIZE, `listMySessions: ${page.data.length} > page size`);
    check(page.headers["x-total-count"] === String(OTHERS), `listMySessions: X-Total-Count ${page.headers["x-total-count"]}`);
    for (const session of page.data) seen.set(session.id, (seen.get(session.id) ?? 0) + 1);
    pages++;
    check(pages <= OTHERS, "listMySessions: the links never end");
    pageToken = nextPageToken(page.headers.link);
    if (!pageToken) break;
  }
  check(pages === Math.ceil(OTHERS / PAGE_SIZE), `listMySessions: ${pages} pages`);
  check(!seen.has(current.id), "listMySessions: the current session is listed");
  for (const { id } of others) check(seen.get(id) === 1, `listMySessions: ${id} seen ${seen.get(id) ?? 0} times`);
  check(seen.size === OTHERS, `listMySessions: ${seen.size} distinct sessions, expected ${OTHERS}`);
  console.log(`  ok listMySessions: ${OTHERS} sessions in ${pages} pages, each once`);

  // disableMySession: another session → 204; the current one → 400; unknown → 204.
  const revoked = await frontend.disableMySession({ id: others[0].id, xSessionToken });
  check(revoked.status === 204, `disableMySession: status ${revoked.status}`);
  await expectError("toSession(revoked)", 401, () => frontend.toSession({ xSessionToken: others[0].token }));
  await expectError("disableMySession(current)", 400, () => frontend.disableMySession({ id: current.id, xSessionToken }));
  const unknown = await frontend.disableMySession({ id: "123456789012345678", xSessionToken });
  check(unknown.status === 204, `disableMySession(unknown): status ${unknown.status}`);
  console.log(`  ok disableMySession: ${others[0].id}`);

  // disableMyOtherSessions: the rest, not the one already revoked, not the current one.
  const all = await frontend.disableMyOtherSessions({ xSessionToken });
  check(all.status === 200, `disableMyOtherSessions: status ${all.status}`);
  check(all.data.count === OTHERS - 1, `disableMyOtherSessions: count ${all.data.count}, expected ${OTHERS - 1}`);
  for (const { token } of others) {
    await expectError("toSession(after disableMyOtherSessions)", 401, () => frontend.toSession({ xSessionToken: token }));
  }
  const left = await frontend.listMySessions({ xSessionToken });
  check(left.data.length === 0 && left.headers["x-total-count"] === "0", `listMySessions after: ${JSON.stringify(left.data)}`);
  check((await frontend.toSession({ xSessionToken })).data.id === current.id, "the current session was revoked");
  const again = await frontend.disableMyOtherSessions({ xSessionToken });
  check(again.data.count === 0, `disableMyOtherSessions again: count ${again.data.count}`);
  console.log(`  ok disableMyOtherSessions: count ${all.data.count}`);

  // No or unknown credentials.
  await expectError("toSession(unknown token)", 401, () => frontend.toSession({ xSessionToken: "sdst_unknown" }));
  await expectError("listMySessions(no token)", 401, () => frontend.listMySessions({}));
  await expectError("listMySessions(garbled page token)", 400, () =>
    frontend.listMySessions({ xSessionToken, pageToken: "garbled" }),
  );
  console.log("  ok errors: 401 and 400 in Kratos' shape");
}

/** Every page of `list` (a function of the page token) along the Link header, checked. */
async function allPages(label, list, pageSize) {
  const ids = [];
  let pageToken;
  for (let pages = 1; ; pages++) {
    const page = await list(pageToken);
    check(page.status === 200, `${label}: status ${page.status}`);
    check(page.data.length <= pageSize, `${label}: ${page.data.length} > page size`);
    check(/rel="first"/.test(page.headers.link ?? ""), `${label}: Link ${page.headers.link}`);
    ids.push(...page.data.map((s) => s.id));
    check(pages <= 50, `${label}: the links never end`);
    pageToken = nextPageToken(page.headers.link);
    if (!pageToken) return { ids, last: page };
  }
}

function sameSet(label, got, expected) {
  check(got.length === new Set(got).size, `${label}: duplicates ${JSON.stringify(got)}`);
  const want = new Set(expected);
  check(got.length === want.size && got.every((id) => want.has(id)), `${label}: ${JSON.stringify(got)}, expected ${JSON.stringify(expected)}`);
}

async function adminFlow(server) {
  const basePath = `${server.url}/auth`;
  const admin = new IdentityApi(new Configuration({ basePath, apiKey: `Bearer ${server.token}` }));
  const frontend = new FrontendApi(new Configuration({ basePath }));
  const before = (await admin.listSessions({ active: true })).data.map((s) => s.id);
  const fresh = [];
  for (let i = 0; i < 4; i++) {
    fresh.push(await createSession(server, { ip: `198.51.100.${i + 1}`, header: { "user-agent": { values: [`admin interop ${i}`] } } }));
  }
  const live = [...before, ...fresh.map((s) => s.id)];

  // listSessions: the active ones, page by page, each once; identity expanded on request.
  const { ids, last } = await allPages("listSessions", (pageToken) => admin.listSessions({ pageSize: 2, pageToken, active: true, expand: ["identity"] }), 2);
  sameSet("listSessions", ids, live);
  check(last.headers["x-total-count"] === undefined, "listSessions: X-Total-Count sent");
  const expanded = (await admin.listSessions({ pageSize: 1, expand: ["identity"] })).data[0];
  check(expanded.identity?.id === server.userId, `listSessions(expand): ${JSON.stringify(expanded.identity)}`);
  console.log(`  ok listSessions: ${ids.length} active sessions along the links, each once`);

  // getSession: identity and devices only when expanded.
  const target = fresh[0];
  const plain = await admin.getSession({ id: target.id });
  check(plain.status === 200 && plain.data.id === target.id, `getSession: ${JSON.stringify(plain.data)}`);
  check(plain.data.identity == null && plain.data.devices?.length === 0, `getSession: not expanded ${JSON.stringify(plain.data)}`);
  const full = await admin.getSession({ id: target.id, expand: ["identity", "devices"] });
  check(full.data.identity?.id === server.userId, `getSession(expand): identity ${JSON.stringify(full.data.identity)}`);
  check(full.data.devices?.[0]?.ip_address === "198.51.100.1", `getSession(expand): devices ${JSON.stringify(full.data.devices)}`);
  await expectError("getSession(unknown)", 404, () => admin.getSession({ id: "123456789012345678" }));
  console.log(`  ok getSession: ${target.id} (expand identity, devices; unknown → 404)`);

  // extendSession: 204, and the expiry moves a day ahead.
  const extended = await admin.extendSession({ id: target.id });
  check(extended.status === 204, `extendSession: status ${extended.status}`);
  const after = (await admin.getSession({ id: target.id })).data;
  const gained = Date.parse(after.expires_at) - Date.parse(plain.data.expires_at);
  check(gained > 20 * 3600 * 1000, `extendSession: expires_at ${plain.data.expires_at} → ${after.expires_at}`);
  console.log(`  ok extendSession: expires_at ${after.expires_at}`);

  // disableSession: 204 twice; the session is kept, inactive, and identifies nobody.
  for (const round of ["", " again"]) {
    const disabled = await admin.disableSession({ id: target.id });
    check(disabled.status === 204, `disableSession${round}: status ${disabled.status}`);
  }
  check((await admin.getSession({ id: target.id })).data.active === false, "disableSession: still active");
  await expectError("toSession(disabled)", 401, () => frontend.toSession({ xSessionToken: target.token }));
  await expectError("extendSession(disabled)", 404, () => admin.extendSession({ id: target.id }));
  console.log(`  ok disableSession: ${target.id} (twice 204)`);

  // listIdentitySessions: the user's active sessions, page by page; unknown identity → [].
  const own = await allPages("listIdentitySessions", (pageToken) => admin.listIdentitySessions({ id: server.userId, pageSize: 2, pageToken, active: true }), 2);
  sameSet("listIdentitySessions", own.ids, live.filter((id) => id !== target.id));
  check(own.last.headers["x-total-count"] === String(live.length - 1), `listIdentitySessions: X-Total-Count ${own.last.headers["x-total-count"]}`);
  const nobody = await admin.listIdentitySessions({ id: "no-such-identity" });
  check(nobody.status === 200 && nobody.data.length === 0, `listIdentitySessions(unknown): ${JSON.stringify(nobody.data)}`);
  console.log(`  ok listIdentitySessions: ${own.ids.length} active sessions, each once`);

  // deleteIdentitySessions: 204, and 204 again with nothing left to revoke.
  for (const round of ["", " again"]) {
    const deleted = await admin.deleteIdentitySessions({ id: server.userId });
    check(deleted.status === 204, `deleteIdentitySessions${round}: status ${deleted.status}`);
  }
  const left = await admin.listIdentitySessions({ id: server.userId, active: true });
  check(left.data.length === 0, `deleteIdentitySessions: left ${JSON.stringify(left.data)}`);
  for (const { token } of fresh) {
    await expectError("toSession(after deleteIdentitySessions)", 401, () => frontend.toSession({ xSessionToken: token }));
  }
  console.log("  ok deleteIdentitySessions: twice 204");

  // Credentials: none → 401, in Kratos' shape.
  const anonymous = new IdentityApi(new Configuration({ basePath }));
  await expectError("listSessions(no credentials)", 401, () => anonymous.listSessions({}));
  await expectError("listSessions(garbled page token)", 400, () => admin.listSessions({ pageToken: "garbled" }));
  console.log("  ok admin errors: 401 and 400 in Kratos' shape");
}

async function loginFlow(server) {
  const frontend = new FrontendApi(new Configuration({ basePath: `${server.url}/auth` }));
  const created = await frontend.createNativeLoginFlow();
  check(created.status === 200 && created.data.type === "api", `createNativeLoginFlow: ${JSON.stringify(created.data)}`);
  const flow = created.data.id;
  const body = (password) => ({ method: "password", identifier: LOGIN_NAME, password });

  let refused;
  try {
    await frontend.updateLoginFlow({ flow, updateLoginFlowBody: body("not the password") });
  } catch (e) {
    refused = e.response;
  }
  check(
    refused?.status === 400 && refused.data?.id === flow && refused.data?.ui?.messages?.[0]?.id === 4000006,
    `updateLoginFlow(wrong password): ${refused?.status} ${JSON.stringify(refused?.data?.ui?.messages)}`,
  );

  const signedIn = await frontend.updateLoginFlow({ flow, updateLoginFlowBody: body(PASSWORD) });
  const token = signedIn.data.session_token;
  check(signedIn.status === 200 && token?.startsWith("sdst_"), `updateLoginFlow: status ${signedIn.status}`);
  check(signedIn.data.session?.identity?.id === server.userId, `updateLoginFlow: ${JSON.stringify(signedIn.data.session)}`);
  const me = await frontend.toSession({ xSessionToken: token });
  check(me.data.id === signedIn.data.session.id, `toSession(after login): ${me.data.id}`);
  await expectError("updateLoginFlow(unknown flow)", 404, () =>
    frontend.updateLoginFlow({ flow: "no-such-flow", updateLoginFlowBody: body(PASSWORD) }),
  );
  console.log(`  ok createNativeLoginFlow, updateLoginFlow: session ${me.data.id} (wrong password → 400 with the flow)`);
}

const server = await startSessiond();
let failed = false;
try {
  await flow(server);
  await adminFlow(server);
  await loginFlow(server);
} catch (e) {
  failed = true;
  const detail = e.response ? ` (HTTP ${e.response.status} ${JSON.stringify(e.response.data)})` : "";
  console.error(`  FAIL @ory/kratos-client: ${e.message}${detail}`);
} finally {
  await server.stop(failed);
}
process.exit(failed ? 1 : 0);
