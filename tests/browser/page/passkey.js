// The passkey page's script (bundled by esbuild into passkey.bundle.js): registers a passkey
// and signs in with it against sessiond on another origin, over gRPC-Web with the official
// ZITADEL TypeScript SDK (@zitadel/client), using the browser's own WebAuthn API:
//
//   RegisterPasskey → navigator.credentials.create → VerifyPasskeyRegistration,
//   CreateSession (user check + WebAuthN challenge) → navigator.credentials.get →
//   SetSession (checks.webAuthN) → GetSession (factors.webAuthN).
//
// Query string: api (sessiond's base URL), token (bearer JWT with user.write and
// session.read/write), userId. The sign-in is also exposed as window.signIn() so the driver
// can sign in again (with a cloned credential) and read the outcome.

import { createClientFor } from "@zitadel/client";
import { createClientTransport } from "@zitadel/client/web";
import { SessionService } from "@zitadel/proto/zitadel/session/v2/session_service_pb.js";
import { UserVerificationRequirement } from "@zitadel/proto/zitadel/session/v2/challenge_pb.js";
import { UserService } from "@zitadel/proto/zitadel/user/v2/user_service_pb.js";
import { Code, ConnectError } from "@connectrpc/connect";

const params = new URLSearchParams(location.search);
const api = params.get("api");
const token = params.get("token");
const userId = params.get("userId");
const transport = createClientTransport(token, { baseUrl: api });
const users = createClientFor(UserService)(transport);
const sessions = createClientFor(SessionService)(transport);

document.getElementById("page-origin").textContent = location.origin;
document.getElementById("api-origin").textContent = api;

// --- base64url <-> bytes, as ZITADEL's login does -------------------------------------------

function fromB64url(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const raw = atob(b64 + "===".slice((b64.length + 3) % 4));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

function toB64url(buffer) {
  const bytes = new Uint8Array(buffer);
  let raw = "";
  for (const b of bytes) raw += String.fromCharCode(b);
  return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function creationOptions(options) {
  const pk = structuredClone(options.publicKey);
  pk.challenge = fromB64url(pk.challenge);
  pk.user.id = fromB64url(pk.user.id);
  pk.excludeCredentials = (pk.excludeCredentials ?? []).map((c) => ({ ...c, id: fromB64url(c.id) }));
  return pk;
}

function requestOptions(options) {
  const pk = structuredClone(options.publicKey);
  pk.challenge = fromB64url(pk.challenge);
  pk.allowCredentials = (pk.allowCredentials ?? []).map((c) => ({ ...c, id: fromB64url(c.id) }));
  return pk;
}

// --- the page --------------------------------------------------------------------------------

function show(step, ok, text, data = {}) {
  const row = document.getElementById(`step-${step}`);
  const state = row.querySelector(".state");
  state.textContent = ok ? "ok" : "failed";
  state.className = `state ${ok ? "ok" : "fail"}`;
  row.querySelector(".result").textContent = text;
  row.dataset.ok = String(ok);
  for (const [key, value] of Object.entries(data)) row.dataset[key] = String(value);
}

function describe(error) {
  if (error instanceof ConnectError) return `${Code[error.code]}: ${error.rawMessage}`;
  return String(error?.message ?? error);
}

async function register() {
  const started = await users.registerPasskey({ userId, domain: location.hostname });
  const credential = await navigator.credentials.create({
    publicKey: creationOptions(started.publicKeyCredentialCreationOptions),
  });
  await users.verifyPasskeyRegistration({
    userId,
    passkeyId: started.passkeyId,
    passkeyName: "virtual authenticator",
    publicKeyCredential: {
      id: credential.id,
      rawId: toB64url(credential.rawId),
      type: credential.type,
      response: {
        attestationObject: toB64url(credential.response.attestationObject),
        clientDataJSON: toB64url(credential.response.clientDataJSON),
      },
    },
  });
  const listed = await users.listPasskeys({ userId });
  return { passkeyId: started.passkeyId, count: listed.result.length, name: listed.result[0]?.name };
}

/** One sign-in with a passkey; resolves to what the driver checks, never throws. */
async function signIn() {
  try {
    const created = await sessions.createSession({
      checks: { user: { search: { case: "userId", value: userId } } },
      challenges: {
        webAuthN: {
          domain: location.hostname,
          userVerificationRequirement: UserVerificationRequirement.REQUIRED,
        },
      },
    });
    const options = created.challenges?.webAuthN?.publicKeyCredentialRequestOptions;
    const assertion = await navigator.credentials.get({ publicKey: requestOptions(options) });
    await sessions.setSession({
      sessionId: created.sessionId,
      checks: {
        webAuthN: {
          credentialAssertionData: {
            id: assertion.id,
            rawId: toB64url(assertion.rawId),
            type: assertion.type,
            response: {
              authenticatorData: toB64url(assertion.response.authenticatorData),
              clientDataJSON: toB64url(assertion.response.clientDataJSON),
              signature: toB64url(assertion.response.signature),
              userHandle: assertion.response.userHandle ? toB64url(assertion.response.userHandle) : "",
            },
          },
        },
      },
    });
    const { session } = await sessions.getSession({ sessionId: created.sessionId });
    const factor = session?.factors?.webAuthN;
    return {
      ok: Boolean(factor?.verifiedAt),
      sessionId: created.sessionId,
      userVerified: Boolean(factor?.userVerified),
      text: `session ${created.sessionId}: webAuthN verified ${factor?.verifiedAt ? "yes" : "no"}, userVerified ${factor?.userVerified}`,
    };
  } catch (error) {
    const e = error instanceof ConnectError ? error : null;
    return { ok: false, code: e ? Code[e.code] : "", text: describe(error) };
  }
}

window.signIn = async (step) => {
  const result = await signIn();
  show(step, result.ok, result.text, result);
  if (step === "clone" && !result.ok) {
    // The expected outcome for a cloned credential.
    const state = document.querySelector(`#step-${step} .state`);
    state.textContent = "refused";
    state.className = "state ok";
  }
  return result;
};

async function run() {
  const status = document.getElementById("status");
  try {
    const registered = await register();
    show("register", registered.count === 1, `passkey ${registered.passkeyId} "${registered.name}"`, registered);
    const result = await window.signIn("signin");
    status.dataset.state = result.ok ? "done" : "error";
    status.textContent = result.ok ? "registered and signed in with a passkey" : result.text;
  } catch (error) {
    show("register", false, describe(error));
    status.dataset.state = "error";
    status.textContent = describe(error);
  }
}

run();
