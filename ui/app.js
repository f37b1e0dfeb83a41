// The account page: sign in with a login name and a password, see and revoke your sessions,
// sign out; and, with an administrator's token, see and revoke a user's sessions.
//
// It talks to sessiond's public APIs on its own origin only:
//   sign in      GET  /auth/self-service/login/api, POST /auth/self-service/login?flow=…
//   my sessions  GET  /auth/sessions/whoami, GET /auth/sessions (X-Session-Token)
//   revoke       DELETE /auth/sessions/{id}, DELETE /auth/sessions
//   sign out     DELETE /v2/sessions/{id} (the session's own token as bearer)
//   admin        GET/DELETE /auth/admin/api/users/{id}/sessions[/{sessionId}] (bearer JWT)
// The session token lives in sessionStorage (this tab only), never in a cookie or a URL;
// the administrator's token only in its input field.

import {
  deviceName,
  emptyRow,
  fromAdmin,
  fromKratos,
  revokeButton,
  sessionRow,
  sessionTable,
} from "./sessions.js";

const TOKEN_KEY = "sessiond.sessionToken";
const PAGE_SIZE = 250;

const $ = (id) => document.getElementById(id);

// --- messages ------------------------------------------------------------------------------

/** A status message, read out politely by screen readers. */
function say(text) {
  const error = $("error");
  error.hidden = true;
  error.textContent = "";
  $("status").textContent = text;
}

/** An error message, read out at once (role=alert). */
function fail(text) {
  $("status").textContent = "";
  const error = $("error");
  error.textContent = text;
  error.hidden = false;
}

// --- the API -------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, id) {
    super(message);
    this.status = status;
    this.id = id;
  }
}

/** A readable message from any of sessiond's error shapes. */
function apiError(status, data) {
  let message;
  let id;
  if (Array.isArray(data?.ui?.messages) && data.ui.messages.length > 0) {
    // A Kratos flow with messages (wrong credentials).
    message = data.ui.messages.map((m) => m.text).join(" ");
    id = String(data.ui.messages[0].id ?? "");
  } else if (data && typeof data.error === "object" && data.error !== null) {
    // Kratos: {"error":{code,status,id,reason,message}}
    message = data.error.reason || data.error.message;
    id = data.error.id;
  } else if (data && typeof data.message === "string") {
    // Admin: {statusCode,error,message,code}; REST: {code,message,details}
    message = data.message;
    id = typeof data.code === "string" ? data.code : data.details?.[0]?.id;
  }
  if (!message) message = `The server answered with status ${status}.`;
  return new ApiError(status, message, id);
}

/** Calls the API on this origin; resolves to {status, data, headers} or throws ApiError. */
async function call(method, path, { headers = {}, body } = {}) {
  const init = {
    method,
    headers: { accept: "application/json", ...headers },
    credentials: "omit",
    cache: "no-store",
    referrerPolicy: "no-referrer",
  };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "The server could not be reached. Check the connection and try again.");
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) throw apiError(response.status, data);
  return { status: response.status, data, headers: response.headers };
}

/** The `rel="next"` URL of a Link header, if it is on this origin. */
function nextLink(headers) {
  const link = headers.get("link");
  if (!link) return null;
  for (const part of link.split(",")) {
    const match = /<([^>]*)>\s*;\s*rel="?next"?/.exec(part);
    if (match) {
      const url = new URL(match[1], location.href);
      if (url.origin === location.origin) return url.pathname + url.search;
    }
  }
  return null;
}

async function busy(button, work) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

// --- my sessions ---------------------------------------------------------------------------

const token = () => sessionStorage.getItem(TOKEN_KEY);
const own = () => ({ "x-session-token": token() ?? "" });
let current = null;

function showView(view) {
  document.body.dataset.view = view;
  $("signin").hidden = view !== "signin";
  $("account").hidden = view !== "account";
}

/** Back to the sign-in form, e.g. when the session ended elsewhere. */
function signedOut(message, asError) {
  sessionStorage.removeItem(TOKEN_KEY);
  current = null;
  $("my-sessions").tBodies[0].replaceChildren();
  showView("signin");
  if (asError) fail(message);
  else say(message);
}

async function loadMySessions() {
  const whoami = await call("GET", "/auth/sessions/whoami", { headers: own() });
  current = whoami.data;
  const others = [];
  let path = `/auth/sessions?page_size=${PAGE_SIZE}`;
  while (path) {
    const page = await call("GET", path, { headers: own() });
    others.push(...(page.data ?? []));
    path = nextLink(page.headers);
  }
  const login = current.identity?.traits?.login_name;
  $("whoami").textContent = login ? `Signed in as ${login}.` : "Signed in.";
  const body = $("my-sessions").tBodies[0];
  const rows = [sessionRow(fromKratos(current), { current: true, action: "Use “Sign out”" })];
  for (const s of others) {
    const session = fromKratos(s);
    const name = `${deviceName(session.agent)} session ${session.id}`;
    rows.push(sessionRow(session, { action: revokeButton(session, name, (b) => revokeMine(session, b)) }));
  }
  body.replaceChildren(...rows);
  body.parentElement.dataset.count = String(rows.length);
  $("revoke-others").disabled = others.length === 0;
  return rows.length;
}

/** Runs `work` on the signed-in account; a 401 means the session is gone. */
async function onAccount(work) {
  try {
    await work();
  } catch (error) {
    if (error.status === 401) {
      signedOut("Your session has ended (signed out, revoked or expired). Please sign in again.", true);
      $("login").focus();
    } else {
      fail(error.message);
    }
  }
}

async function revokeMine(session, button) {
  await onAccount(() =>
    busy(button, async () => {
      await call("DELETE", `/auth/sessions/${encodeURIComponent(session.id)}`, { headers: own() });
      const count = await loadMySessions();
      say(`Revoked the session on ${deviceName(session.agent)}. ${count} session${count === 1 ? "" : "s"} left.`);
      $("account-heading").focus();
    }),
  );
}

async function revokeOthers() {
  const button = $("revoke-others");
  await onAccount(() =>
    busy(button, async () => {
      const result = await call("DELETE", "/auth/sessions", { headers: own() });
      await loadMySessions();
      const n = result.data?.count ?? 0;
      say(`Revoked ${n} other session${n === 1 ? "" : "s"}.`);
      $("account-heading").focus();
    }),
  );
  $("revoke-others").disabled = $("my-sessions").tBodies[0].rows.length <= 1;
}

async function refresh() {
  await onAccount(() =>
    busy($("refresh"), async () => {
      const count = await loadMySessions();
      say(`${count} session${count === 1 ? "" : "s"}.`);
    }),
  );
}

async function signOut() {
  const button = $("signout");
  await busy(button, async () => {
    try {
      if (current) {
        await call("DELETE", `/v2/sessions/${encodeURIComponent(current.id)}`, {
          headers: { authorization: `Bearer ${token() ?? ""}` },
          body: {},
        });
      }
    } catch (error) {
      if (error.status !== 401) {
        fail(`Signing out failed: ${error.message}`);
        return;
      }
    }
    signedOut("You are signed out.", false);
    $("login").focus();
  });
}

async function signIn(event) {
  event.preventDefault();
  const login = $("login");
  const password = $("password");
  const identifier = login.value.trim();
  if (!identifier || !password.value) {
    fail("Enter your login name and your password.");
    (identifier ? password : login).focus();
    return;
  }
  await busy($("signin-submit"), async () => {
    say("Signing in…");
    try {
      const flow = await call("GET", "/auth/self-service/login/api");
      const result = await call("POST", `/auth/self-service/login?flow=${encodeURIComponent(flow.data.id)}`, {
        body: { method: "password", identifier, password: password.value },
      });
      sessionStorage.setItem(TOKEN_KEY, result.data.session_token);
    } catch (error) {
      fail(`Sign-in failed: ${error.message}`);
      password.focus();
      return;
    }
    password.value = "";
    showView("account");
    await onAccount(async () => {
      const count = await loadMySessions();
      say(`Signed in. ${count} session${count === 1 ? "" : "s"}.`);
      $("account-heading").focus();
    });
  });
}

// --- the administrator's view --------------------------------------------------------------

let adminUser = null;

function adminHeaders() {
  return { authorization: `Bearer ${$("admin-token").value.trim()}` };
}

function adminMessage(error, doing) {
  if (error.status === 401) return `${doing} failed: the token was not accepted (${error.message}).`;
  if (error.status === 403) return `${doing} failed: the token lacks a permission (${error.message}).`;
  return `${doing} failed: ${error.message}`;
}

async function loadAdminSessions(user) {
  const sessions = [];
  let pageToken = "";
  do {
    const query = new URLSearchParams({ active: "true", pageSize: "100" });
    if (pageToken) query.set("pageToken", pageToken);
    const page = await call("GET", `/auth/admin/api/users/${encodeURIComponent(user)}/sessions?${query}`, {
      headers: adminHeaders(),
    });
    sessions.push(...(page.data?.data ?? []));
    pageToken = page.data?.nextPageToken ?? "";
  } while (pageToken);
  const rows = sessions.map((s) => {
    const session = fromAdmin(s);
    const name = `${deviceName(session.agent)} session ${session.id}`;
    return sessionRow(session, { action: revokeButton(session, name, (b) => revokeAsAdmin(session, b)) });
  });
  const body = $("admin-sessions").tBodies[0];
  body.replaceChildren(...(rows.length ? rows : [emptyRow("This user has no active session.")]));
  $("admin-sessions").dataset.count = String(rows.length);
  $("admin-caption").textContent = `Active sessions of user ${user}: ${rows.length}`;
  $("admin-result").hidden = false;
  return rows.length;
}

async function adminShow(event) {
  event.preventDefault();
  const user = $("admin-user").value.trim();
  if (!$("admin-token").value.trim() || !user) {
    fail("Enter a bearer token and a user id.");
    ($("admin-token").value.trim() ? $("admin-user") : $("admin-token")).focus();
    return;
  }
  await busy($("admin-submit"), async () => {
    try {
      const count = await loadAdminSessions(user);
      adminUser = user;
      say(`User ${user} has ${count} active session${count === 1 ? "" : "s"}.`);
    } catch (error) {
      fail(adminMessage(error, "Reading the sessions"));
    }
  });
}

async function revokeAsAdmin(session, button) {
  const user = adminUser;
  await busy(button, async () => {
    try {
      await call(
        "DELETE",
        `/auth/admin/api/users/${encodeURIComponent(user)}/sessions/${encodeURIComponent(session.id)}`,
        { headers: adminHeaders() },
      );
    } catch (error) {
      fail(adminMessage(error, "Revoking the session"));
      return;
    }
    try {
      const count = await loadAdminSessions(user);
      say(`Revoked session ${session.id} of user ${user}. ${count} active session${count === 1 ? "" : "s"} left.`);
      $("admin-heading").focus();
    } catch (error) {
      fail(adminMessage(error, "Reading the sessions"));
    }
  });
}

// --- start ---------------------------------------------------------------------------------

function start() {
  sessionTable($("my-sessions"));
  sessionTable($("admin-sessions"));
  $("signin-form").addEventListener("submit", signIn);
  $("refresh").addEventListener("click", refresh);
  $("revoke-others").addEventListener("click", revokeOthers);
  $("signout").addEventListener("click", signOut);
  $("admin-form").addEventListener("submit", adminShow);
  if (token()) {
    showView("account");
    onAccount(async () => {
      const count = await loadMySessions();
      say(`${count} session${count === 1 ? "" : "s"}.`);
    });
  } else {
    showView("signin");
  }
}

start();
