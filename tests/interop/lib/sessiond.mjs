// Starts a throw-away sessiond for one Node interop script (the Node twin of
// sessiond_fixture.py): own data dir, user alice/password123, an all-permissions bearer token,
// and an OS-chosen port read from the JSON "listening" log line (no port race).
// The binary comes from $SESSIOND_BIN, else ../../target/debug/sessiond. Options: `serveArgs`
// (more `serve` arguments) and `permissions` (the token's, comma-separated).

import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, accessSync, constants } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const LOGIN_NAME = "alice";
export const PASSWORD = "password123";

export async function startSessiond({
  serveArgs = [],
  permissions = "session.read,session.write,session.delete",
} = {}) {
  const bin = process.env.SESSIOND_BIN || resolve(here, "../../../target/debug/sessiond");
  accessSync(bin, constants.X_OK);
  const dataDir = mkdtempSync(join(tmpdir(), "sessiond-interop-"));
  const run = (args, input) =>
    execFileSync(bin, [...args, "--data-dir", dataDir], { input, encoding: "utf8", timeout: 30_000 }).trim();
  const userId = run(["users", "add", "--login-name", LOGIN_NAME, "--password-stdin"], PASSWORD + "\n")
    .split("\n")
    .pop();
  const token = run([
    "token", "mint", "--subject", "admin",
    "--permissions", permissions,
  ]);
  const proc = spawn(
    bin,
    ["serve", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--log-format", "json", ...serveArgs],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  const log = [];
  const address = await new Promise((resolveAddr, reject) => {
    const timer = setTimeout(() => reject(new Error("sessiond did not report its address in 30 s")), 30_000);
    proc.on("exit", (code) => reject(new Error(`sessiond exited (${code}) before listening:\n${log.join("\n")}`)));
    createInterface({ input: proc.stderr }).on("line", (line) => {
      log.push(line);
      try {
        const fields = JSON.parse(line).fields ?? {};
        if (String(fields.message).includes("listening") && fields.address) {
          clearTimeout(timer);
          resolveAddr(fields.address);
        }
      } catch {
        /* not JSON */
      }
    });
  });
  return {
    url: `http://${address}`,
    token,
    userId,
    log,
    async stop(failed = false) {
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once("exit", r));
        proc.kill("SIGTERM");
        await exited;
      }
      if (failed) process.stderr.write(`---- sessiond log (tail) ----\n${log.slice(-30).join("\n")}\n`);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export function check(condition, message) {
  if (!condition) throw new Error(message);
}

// Starts smtp_sink.py (aiosmtpd, from the Python clients' venv: $INTEROP_PYTHON, else
// python3) on an OS-chosen port. `next()` waits for the next received message
// ({to, text}, text decoded); `stop()` ends the sink.
export async function startSmtpSink() {
  const python = process.env.INTEROP_PYTHON || "python3";
  const proc = spawn(python, ["-W", "ignore", resolve(here, "../smtp_sink.py")], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const received = [];
  const waiting = [];
  const port = new Promise((resolvePort, reject) => {
    const timer = setTimeout(() => reject(new Error("the SMTP sink did not start in 30 s")), 30_000);
    proc.on("exit", (code) => reject(new Error(`the SMTP sink exited (${code})`)));
    createInterface({ input: proc.stdout }).on("line", (line) => {
      const message = JSON.parse(line);
      if (message.port) {
        clearTimeout(timer);
        resolvePort(message.port);
      } else if (waiting.length) {
        waiting.shift()(message);
      } else {
        received.push(message);
      }
    });
  });
  return {
    port: await port,
    next(timeoutMs = 10_000) {
      if (received.length) return Promise.resolve(received.shift());
      return new Promise((resolveMessage, reject) => {
        const timer = setTimeout(() => reject(new Error(`no email within ${timeoutMs} ms`)), timeoutMs);
        waiting.push((m) => {
          clearTimeout(timer);
          resolveMessage(m);
        });
      });
    },
    async stop() {
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once("exit", r));
        proc.stdin.end();
        proc.kill("SIGTERM");
        await exited;
      }
    },
  };
}
