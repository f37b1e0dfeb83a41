// Browser test: a page served from one origin calls sessiond on another origin over gRPC-Web,
// in Debian's headless Chromium driven by playwright-core.
//
//   1. bundles page/app.js (esbuild) into page/app.bundle.js;
//   2. serves page/ from two static servers on 127.0.0.1 (OS-chosen ports): the allowed origin
//      and a second, not allowed, origin;
//   3. starts sessiond (binary: argv[2] or $SESSIOND_BIN) with its own data dir, a user, an
//      all-permissions bearer JWT and --cors-allowed-origins <allowed origin>;
//   4. opens the page on the allowed origin: CreateSession, ListSessions, DeleteSession and a
//      GetSession after the delete (NOT_FOUND) must all show in the DOM as expected; takes a
//      screenshot (screenshot.png, or $BROWSER_SCREENSHOT);
//   5. opens the same page on the other origin: the CORS preflight must stop the first call,
//      and sessiond must hold no session afterwards.
//   6. the account page served by sessiond at /ui/ (account.mjs): sign in with the keyboard,
//      two sessions, revoke the other, the administrator's view, sign out, no CSP violation;
//      with $ACCOUNT_SCREENSHOTS (run.sh --screenshots), its screenshots go to that directory.
//   7. the session event feed (feed.mjs): a tab's EventSource on /auth/sessions/events sees
//      its session deleted elsewhere, then closes.
//   8. passkeys (passkey.mjs): with a DevTools virtual authenticator, a page on
//      http://localhost:<port> registers a passkey and signs in with it over gRPC-Web; a
//      cloned credential whose counter is behind is refused.
//
// Prints one line per check and exits non-zero on the first failure.

import { spawn, execFileSync } from "node:child_process";
import { createServer } from "node:http";
import { mkdtempSync, readFileSync, rmSync, accessSync, constants } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, extname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

import * as esbuild from "esbuild";
import { chromium } from "playwright-core";

import { accountScenario } from "./account.mjs";
import { feedScenario } from "./feed.mjs";
import { passkeyScenario } from "./passkey.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const pageDir = join(here, "page");
const LOGIN = "alice@example.com";
const PASSWORD = "correct horse battery";
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const SCREENSHOT = resolve(process.env.BROWSER_SCREENSHOT || join(here, "screenshot.png"));
const PASSKEY_SCREENSHOT = process.env.PASSKEY_SCREENSHOT ? resolve(process.env.PASSKEY_SCREENSHOT) : null;

let passed = 0;
function check(condition, message) {
  if (!condition) throw new Error(message);
  passed += 1;
  console.log(`ok   ${message}`);
}

// --- the page ------------------------------------------------------------------------------

async function bundle() {
  await esbuild.build({
    entryPoints: { "app.bundle": join(pageDir, "app.js"), "passkey.bundle": join(pageDir, "passkey.js") },
    outdir: pageDir,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "chrome110",
    minify: true,
    sourcemap: "inline",
    logLevel: "warning",
  });
}

const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8" };

/** A static server for page/ on 127.0.0.1:0; resolves to { origin, close }. */
function servePage() {
  const server = createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    const name = path === "/" ? "index.html" : path.slice(1);
    if (!/^[\w.-]+$/.test(name) || !(extname(name) in TYPES)) {
      res.writeHead(404).end();
      return;
    }
    try {
      const body = readFileSync(join(pageDir, name));
      res.writeHead(200, { "content-type": TYPES[extname(name)], "cache-control": "no-store" }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((ok) =>
    server.listen(0, "127.0.0.1", () =>
      ok({ origin: `http://127.0.0.1:${server.address().port}`, close: () => server.close() }),
    ),
  );
}

// --- sessiond ------------------------------------------------------------------------------

async function startSessiond(bin, allowedOrigin, passkeyOrigin) {
  accessSync(bin, constants.X_OK);
  const dataDir = mkdtempSync(join(tmpdir(), "sessiond-browser-"));
  const run = (args, input) =>
    execFileSync(bin, [...args, "--data-dir", dataDir], { input, encoding: "utf8", timeout: 30_000 }).trim();
  const userId = run(["users", "add", "--login-name", LOGIN, "--password-stdin"], PASSWORD + "\n");
  const token = run(["token", "mint", "--subject", "browser-test", "--permissions", "session.read,session.write,session.delete"]);
  const readToken = run(["token", "mint", "--subject", "browser-reader", "--permissions", "session.read"]);
  const passkeyToken = run(["token", "mint", "--subject", "browser-passkeys", "--permissions",
    "session.read,session.write,user.read,user.write"]);
  const proc = spawn(
    bin,
    ["serve", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--log-format", "json",
     "--cors-allowed-origins", `${allowedOrigin},${passkeyOrigin}`, "--webauthn-origins", passkeyOrigin],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  const log = [];
  const address = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error("sessiond did not report its address in 30 s")), 30_000);
    proc.on("exit", (code) => fail(new Error(`sessiond exited (${code}) before listening:\n${log.join("\n")}`)));
    createInterface({ input: proc.stderr }).on("line", (line) => {
      log.push(line);
      try {
        const fields = JSON.parse(line).fields ?? {};
        if (String(fields.message).includes("listening") && fields.address) {
          clearTimeout(timer);
          ok(fields.address);
        }
      } catch {
        /* not JSON */
      }
    });
  });
  return {
    url: `http://${address}`,
    token,
    readToken,
    passkeyToken,
    userId,
    log,
    async stop() {
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once("exit", r));
        proc.kill("SIGTERM");
        await exited;
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

// --- the test ------------------------------------------------------------------------------

async function openPage(browser, origin, server) {
  const page = await browser.newPage({ viewport: { width: 1000, height: 520 } });
  const consoleLines = [];
  const calls = [];
  page.on("console", (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => consoleLines.push(`[pageerror] ${e.message}`));
  page.on("request", (r) => {
    if (r.url().startsWith(server.url)) calls.push(r);
  });
  const query = new URLSearchParams({ api: server.url, token: server.token, login: LOGIN, password: PASSWORD });
  await page.goto(`${origin}/index.html?${query}`);
  await page.waitForFunction(() => document.getElementById("status")?.dataset.state !== "running", null, {
    timeout: 30_000,
  });
  // allHeaders() has what the network stack added (Origin); headers() does not.
  const sent = await Promise.all(
    calls.map(async (r) => ({ method: r.method(), url: r.url(), headers: await r.allHeaders() })),
  );
  return { page, consoleLines, calls: sent };
}

async function rows(page) {
  return page.evaluate(() =>
    Object.fromEntries(
      [...document.querySelectorAll("tr[id^=step-]")].map((tr) => [
        tr.id.slice(5),
        { ...tr.dataset, text: tr.querySelector(".result").textContent },
      ]),
    ),
  );
}

async function main() {
  const bin = resolve(process.argv[2] || process.env.SESSIOND_BIN || join(here, "../../target/debug/sessiond"));
  await bundle();
  const allowed = await servePage();
  const other = await servePage();
  // WebAuthn needs a domain (not an IP address) in a secure context: http://localhost is one.
  const passkeyPage = await servePage();
  const passkeyOrigin = passkeyPage.origin.replace("127.0.0.1", "localhost");
  const server = await startSessiond(bin, allowed.origin, passkeyOrigin);
  let browser;
  let failed = true;
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
      ],
    });
    console.log(`page ${allowed.origin} -> sessiond ${server.url} (Chromium ${browser.version()})`);

    // The allowed origin: the whole flow works.
    const { page, consoleLines, calls } = await openPage(browser, allowed.origin, server);
    const status = await page.evaluate(() => document.getElementById("status").dataset.state);
    const steps = await rows(page);
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    if (status !== "done") {
      console.error(JSON.stringify(steps, null, 2), "\n", consoleLines.join("\n"));
    }
    check(status === "done", `allowed origin: the page finished (${status})`);
    const id = steps.create.sessionId;
    check(/^\d+$/.test(id ?? "") && steps.create.sequence === "1", `CreateSession: session ${id}, sequence 1`);
    check(
      steps.list.ok === "true" && steps.list.count === "1" && steps.list.ids === id && steps.list.total === "1",
      `ListSessions: exactly ${id} (totalResult ${steps.list.total})`,
    );
    check(steps.list.loginName === LOGIN, `ListSessions: the session's user is ${LOGIN}`);
    check(steps.delete.ok === "true" && steps.delete.sequence === "2", "DeleteSession: terminated (sequence 2)");
    check(steps.gone.code === "NotFound", `GetSession after delete: ${steps.gone.text}`);
    const procedures = calls.map((c) => new URL(c.url).pathname.split("/").pop());
    check(
      procedures.join(",") === "CreateSession,ListSessions,DeleteSession,GetSession",
      `the page called ${procedures.join(", ")} on ${server.url}`,
    );
    const notGrpcWeb = calls.filter(
      (c) =>
        c.method !== "POST" ||
        c.headers["content-type"] !== "application/grpc-web+proto" ||
        c.headers.origin !== allowed.origin,
    );
    check(
      calls.length === 4 && notGrpcWeb.length === 0,
      `every call was gRPC-Web (application/grpc-web+proto) with Origin ${allowed.origin}` +
        (notGrpcWeb.length ? `; not: ${JSON.stringify(notGrpcWeb)}` : ""),
    );
    await page.close();
    console.log(`screenshot: ${SCREENSHOT}`);

    // Another origin: the preflight is refused, so the first call never reaches the service.
    const blocked = await openPage(browser, other.origin, server);
    const blockedStatus = await blocked.page.evaluate(() => document.getElementById("status").dataset.state);
    const blockedSteps = await rows(blocked.page);
    check(
      blockedStatus === "error" && blockedSteps.create.ok === "false",
      `origin ${other.origin} (not allowed): CreateSession fails in the browser (${blockedSteps.create.text})`,
    );
    const cors = blocked.consoleLines.some((l) => /CORS|Access-Control-Allow-Origin/i.test(l));
    check(cors, "not allowed origin: Chromium reports the CORS refusal");
    await blocked.page.close();

    const response = await fetch(`${server.url}/v2/sessions/search`, {
      method: "POST",
      headers: { authorization: `Bearer ${server.token}`, "content-type": "application/json" },
      body: "{}",
    });
    const listing = await response.json();
    check(
      response.status === 200 && (listing.sessions ?? []).length === 0,
      `no session is left over (the blocked page created none): ${JSON.stringify(listing.details)}`,
    );

    // The account page, served by sessiond itself.
    const screenshotDir = process.env.ACCOUNT_SCREENSHOTS ? resolve(process.env.ACCOUNT_SCREENSHOTS) : null;
    await accountScenario(browser, server, { login: LOGIN, password: PASSWORD, check, screenshotDir });
    await feedScenario(browser, server, { login: LOGIN, password: PASSWORD, check });
    await passkeyScenario(browser, server, { origin: passkeyOrigin, check, screenshot: PASSKEY_SCREENSHOT });
    failed = false;
  } finally {
    await browser?.close();
    if (failed) process.stderr.write(`---- sessiond log (tail) ----\n${server.log.slice(-30).join("\n")}\n`);
    await server.stop();
    allowed.close();
    other.close();
    passkeyPage.close();
  }
  console.log(`browser: ${passed} passed, 0 failed`);
}

main().catch((error) => {
  console.error(`FAIL ${error.message}`);
  process.exit(1);
});
