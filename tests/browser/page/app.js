// The page's script (bundled by esbuild into app.bundle.js): calls sessiond's
// zitadel.session.v2.SessionService over gRPC-Web with the official ZITADEL TypeScript SDK's
// browser transport (@zitadel/client/web: connect-web's createGrpcWebTransport plus a bearer
// interceptor), and writes every result into the DOM for the test driver to read.
//
// Query string: api (sessiond's base URL, another origin), token (bearer JWT with
// session.read/write/delete), login and password (a user to check).

import { createClientFor } from "@zitadel/client";
import { createClientTransport } from "@zitadel/client/web";
import { SessionService } from "@zitadel/proto/zitadel/session/v2/session_service_pb.js";
import { Code, ConnectError } from "@connectrpc/connect";

const params = new URLSearchParams(location.search);
const api = params.get("api");
const token = params.get("token");
const login = params.get("login");
const password = params.get("password");

document.getElementById("page-origin").textContent = location.origin;
document.getElementById("api-origin").textContent = api;

function show(step, ok, text, data = {}) {
  const row = document.getElementById(`step-${step}`);
  const state = row.querySelector(".state");
  state.textContent = ok ? "ok" : "failed";
  state.className = `state ${ok ? "ok" : "fail"}`;
  row.querySelector(".result").textContent = text;
  row.dataset.ok = String(ok);
  for (const [key, value] of Object.entries(data)) row.dataset[key] = String(value);
}

function finish(state, text) {
  const status = document.getElementById("status");
  status.dataset.state = state;
  status.textContent = text;
  status.className = state === "done" ? "ok" : "fail";
}

function describe(error) {
  const e = ConnectError.from(error);
  return `${Code[e.code]}: ${e.rawMessage}`;
}

async function run() {
  const client = createClientFor(SessionService)(createClientTransport(token, { baseUrl: api }));
  let step = "create";
  try {
    const created = await client.createSession({
      checks: {
        user: { search: { case: "loginName", value: login } },
        password: { password },
      },
      userAgent: { description: "browser test", header: { "user-agent": { values: [navigator.userAgent] } } },
    });
    show(
      "create",
      Boolean(created.sessionId && created.sessionToken),
      `sessionId ${created.sessionId}, sequence ${created.details?.sequence}, token ${created.sessionToken.slice(0, 10)}…`,
      { sessionId: created.sessionId, sequence: created.details?.sequence ?? "" },
    );

    step = "list";
    const listed = await client.listSessions({
      queries: [{ query: { case: "idsQuery", value: { ids: [created.sessionId] } } }],
    });
    const session = listed.sessions[0];
    show(
      "list",
      listed.sessions.length === 1 && session.id === created.sessionId,
      `${listed.details?.totalResult} session(s): ${session?.id} for ${session?.factors?.user?.loginName}` +
        `, password checked ${session?.factors?.password ? "yes" : "no"}`,
      {
        count: listed.sessions.length,
        total: listed.details?.totalResult ?? "",
        ids: listed.sessions.map((s) => s.id).join(","),
        loginName: session?.factors?.user?.loginName ?? "",
      },
    );

    step = "delete";
    const deleted = await client.deleteSession({
      sessionId: created.sessionId,
      sessionToken: created.sessionToken,
    });
    show("delete", Boolean(deleted.details?.changeDate), `terminated, sequence ${deleted.details?.sequence}`, {
      sequence: deleted.details?.sequence ?? "",
    });

    step = "gone";
    try {
      await client.getSession({ sessionId: created.sessionId });
      show("gone", false, "the deleted session is still readable", { code: "ok" });
    } catch (error) {
      const code = Code[ConnectError.from(error).code];
      show("gone", code === "NotFound", describe(error), { code });
    }
    finish("done", "done: created, listed and deleted a session over gRPC-Web");
  } catch (error) {
    show(step, false, describe(error), { code: Code[ConnectError.from(error).code] });
    finish("error", `error in ${step}: ${describe(error)}`);
  }
}

run();
