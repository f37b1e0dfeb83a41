// Browser test of the account page at /ui/, served by sessiond itself, with the keyboard only:
//
//   1. a second session of the user is created beforehand through the API (CreateSession, REST,
//      as "Firefox on Windows" from 192.0.2.7);
//   2. /ui/ is opened; Tab reaches the login field in order; the login name and password are
//      typed and the form is submitted with Enter;
//   3. the page lists two sessions, the current one marked, the other as "Firefox on Windows";
//      the session token is in sessionStorage only (no cookie, no localStorage, not in the URL);
//   4. at 375 px wide the sessions are cards and nothing scrolls sideways; with a screenshot
//      directory, account-desktop.png (1280 wide) and account-phone.png (375 wide) go there;
//   5. the other session is revoked (Enter on its button): it leaves the list and the API;
//   6. the administrator's view with a token that may read but not revoke: the user's session
//      is listed, and revoking it shows the missing permission as an alert;
//   7. sign out (Enter): the page is back at the sign-in form and the session is terminated;
//   8. no Content-Security-Policy violation was reported (console, DevTools Log domain, and
//      the page's securitypolicyviolation events), and no page error.

import { join } from "node:path";

/** Runs the scenario against `server` (from run.mjs); `check(condition, message)` reports. */
export async function accountScenario(browser, server, { login, password, check, screenshotDir }) {
  const other = await createOtherSession(server, login, password);
  check(/^\d+$/.test(other.id), `a second session ${other.id} was created through the API`);

  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  const problems = [];
  const failures = [];
  page.on("response", (r) => {
    if (r.status() >= 400) failures.push(`${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`);
  });
  page.on("console", (m) => {
    // Failed requests are judged by their answers (above), not by their console lines.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(`[console] ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`[pageerror] ${e.message}`));
  await page.addInitScript(() => {
    window.__violations = [];
    document.addEventListener("securitypolicyviolation", (e) =>
      window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`),
    );
  });
  const devtools = await page.context().newCDPSession(page);
  await devtools.send("Log.enable");
  devtools.on("Log.entryAdded", ({ entry }) => {
    if (entry.source === "security" || entry.source === "violation" || (entry.level === "error" && entry.source !== "network")) {
      problems.push(`[log:${entry.source}] ${entry.text}`);
    }
  });

  try {
    const response = await page.goto(`${server.url}/ui/`);
    const csp = response.headers()["content-security-policy"] ?? "";
    check(
      response.status() === 200 && csp.includes("script-src 'self'") && !csp.includes("unsafe"),
      `GET /ui/: 200 with a strict Content-Security-Policy`,
    );
    await page.waitForSelector("body[data-view=signin]");

    // Keyboard only: skip link, two navigation links, then the login name.
    for (let i = 0; i < 4; i += 1) await page.keyboard.press("Tab");
    const focused = await page.evaluate(() => document.activeElement?.id);
    check(focused === "login", `Tab order reaches the login field fourth (focused: ${focused})`);
    await page.keyboard.type(login);
    await page.keyboard.press("Tab");
    await page.keyboard.type(password);
    await page.keyboard.press("Enter");
    await page.waitForSelector("body[data-view=account] #my-sessions tbody tr[data-current=true]", { timeout: 15_000 });

    const rows = await sessionRows(page, "my-sessions");
    const current = rows.find((r) => r.current);
    const others = rows.filter((r) => !r.current);
    check(rows.length === 2 && current && others.length === 1, `two sessions listed, one marked current: ${JSON.stringify(rows)}`);
    check(others[0].id === other.id, `the other session is ${other.id}`);
    check(
      others[0].device === "Firefox on Windows" && others[0].ip === "192.0.2.7",
      `the other session reads "${others[0].device}" from ${others[0].ip}`,
    );
    check(
      /Chrome on Linux/.test(current.device) && /This browser/.test(current.device) && current.ip === "127.0.0.1",
      `the current one: "${current.device}" from ${current.ip}`,
    );
    const storage = await page.evaluate(() => ({
      session: Object.keys(sessionStorage).map((k) => [k, sessionStorage.getItem(k)]),
      local: localStorage.length,
      cookie: document.cookie,
      url: location.href,
    }));
    const token = storage.session.find(([k]) => k === "sessiond.sessionToken")?.[1] ?? "";
    check(
      token.startsWith("sdst_") && storage.local === 0 && storage.cookie === "" && !storage.url.includes(token),
      "the session token is in sessionStorage only (no cookie, no localStorage, not in the URL)",
    );
    const status = await page.textContent("#status");
    check(/Signed in\. 2 sessions/.test(status), `status message: "${status}"`);

    // A phone-sized viewport: each session a card, nothing wider than the screen.
    const desktop = screenshotDir && join(screenshotDir, "account-desktop.png");
    const phone = screenshotDir && join(screenshotDir, "account-phone.png");
    if (desktop) await page.screenshot({ path: desktop, fullPage: true });
    await page.setViewportSize({ width: 375, height: 812 });
    if (phone) await page.screenshot({ path: phone, fullPage: true });
    const narrow = await page.evaluate(() => ({
      overflow: document.documentElement.scrollWidth - window.innerWidth,
      cards: [...document.querySelectorAll("#my-sessions tbody tr")].map((tr) => getComputedStyle(tr).display),
    }));
    check(
      narrow.overflow <= 0 && narrow.cards.every((d) => d === "block"),
      `at 375 px the sessions are cards and nothing scrolls sideways (overflow ${narrow.overflow} px)`,
    );
    await page.setViewportSize({ width: 1280, height: 860 });
    if (screenshotDir) console.log(`screenshots: ${desktop}, ${phone}`);

    // Revoke the other session with the keyboard.
    await page.focus(`button[data-revoke="${other.id}"]`);
    await page.keyboard.press("Enter");
    await page.waitForFunction(
      (id) => !document.querySelector(`#my-sessions tr[data-session-id="${id}"]`),
      other.id,
      { timeout: 15_000 },
    );
    const left = await sessionRows(page, "my-sessions");
    check(left.length === 1 && left[0].current, "after revoking, only the current session is listed");
    check((await api(server, "GET", `/v2/sessions/${other.id}`)).status === 404, "the revoked session is gone from the API");
    const afterRevoke = await page.textContent("#status");
    check(/Revoked the session on Firefox on Windows/.test(afterRevoke), `status message: "${afterRevoke}"`);

    // The administrator's view, with a token that may read but not revoke.
    await page.fill("#admin-token", server.readToken);
    await page.fill("#admin-user", other.userId);
    await page.focus("#admin-user");
    await page.keyboard.press("Enter");
    await page.waitForSelector("#admin-result:not([hidden]) #admin-sessions tbody tr[data-session-id]", { timeout: 15_000 });
    const adminRows = await sessionRows(page, "admin-sessions");
    check(
      adminRows.length === 1 && adminRows[0].id === current.id,
      `administrator's view: the user's one active session ${current.id}`,
    );
    await page.focus(`#admin-sessions button[data-revoke="${current.id}"]`);
    await page.keyboard.press("Enter");
    await page.waitForSelector("#error:not([hidden])", { timeout: 15_000 });
    const alert = await page.textContent("#error");
    check(/lacks a permission/.test(alert) && /session\.delete/.test(alert), `revoking without session.delete: "${alert}"`);
    check((await sessionRows(page, "my-sessions")).length === 1, "the current session survived the refused revoke");

    // Sign out with the keyboard.
    await page.focus("#signout");
    await page.keyboard.press("Enter");
    await page.waitForSelector("body[data-view=signin]", { timeout: 15_000 });
    const out = await page.evaluate(() => ({
      token: sessionStorage.getItem("sessiond.sessionToken"),
      focus: document.activeElement?.id,
      status: document.getElementById("status").textContent,
    }));
    check(out.token === null && out.focus === "login", `signed out: token forgotten, focus on the login field ("${out.status}")`);
    check((await api(server, "GET", `/v2/sessions/${current.id}`)).status === 404, "the signed-out session is terminated");

    const expected = [`403 DELETE /auth/admin/api/users/${other.userId}/sessions/${current.id}`];
    check(
      JSON.stringify(failures) === JSON.stringify(expected),
      `the only failed request was the refused revoke: ${failures.join(", ")}`,
    );
    const violations = await page.evaluate(() => window.__violations);
    check(
      violations.length === 0 && problems.length === 0,
      `no CSP violation and no page error` + (violations.length || problems.length ? `: ${[...violations, ...problems].join(" | ")}` : ""),
    );
  } finally {
    await page.close();
  }
}

async function api(server, method, path, body) {
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${server.token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, json: await response.json().catch(() => null) };
}

/** A session of the user created through the API, as another browser on another machine. */
async function createOtherSession(server, login, password) {
  const agent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0";
  const created = await api(server, "POST", "/v2/sessions", {
    checks: { user: { loginName: login }, password: { password } },
    userAgent: { ip: "192.0.2.7", header: { "user-agent": { values: [agent] } } },
    lifetime: "3600s",
  });
  if (created.status !== 201) throw new Error(`CreateSession: ${created.status} ${JSON.stringify(created.json)}`);
  const id = created.json.sessionId;
  const read = await api(server, "GET", `/v2/sessions/${id}`);
  return { id, userId: read.json?.session?.factors?.user?.id };
}

/** The rows of a session table as {id, current, device, ip}. */
function sessionRows(page, table) {
  return page.evaluate(
    (tableId) =>
      [...document.querySelectorAll(`#${tableId} tbody tr[data-session-id]`)].map((tr) => ({
        id: tr.dataset.sessionId,
        current: tr.dataset.current === "true",
        device: tr.cells[0].textContent,
        ip: tr.cells[1].textContent,
      })),
    table,
  );
}
