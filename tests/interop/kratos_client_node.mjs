// Interop: the official Ory Kratos TypeScript SDK (npm @ory/kratos-client, pinned in
// package.json) against sessiond's self-service face, FrontendApi with base path `…/auth`:
//
//   toSession              GET    /auth/sessions/whoami  (X-Session-Token, and the Cookie header)
//   listMySessions         GET    /auth/sessions         (pageSize, following the Link header's
//                                                          page_token until no rel="next" is left)
//   disableMySession       DELETE /auth/sessions/{id}    (204; the current session → 400)
//   disableMyOtherSessions DELETE /auth/sessions         ({count})
//
// The sessions are created through the SessionService's REST face (POST /v2/sessions) with the
// fixture's bearer token, as a login UI would; their sessionTokens identify the user here.

import { Configuration, FrontendApi } from "@ory/kratos-client";

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

const server = await startSessiond();
let failed = false;
try {
  await flow(server);
} catch (e) {
  failed = true;
  const detail = e.response ? ` (HTTP ${e.response.status} ${JSON.stringify(e.response.data)})` : "";
  console.error(`  FAIL @ory/kratos-client: ${e.message}${detail}`);
} finally {
  await server.stop(failed);
}
process.exit(failed ? 1 : 0);
