// Passkeys in a real browser: Chromium's DevTools virtual authenticator (CTAP2, internal
// transport, resident keys, user verification) stands in for a platform authenticator.
//
//   1. page/passkey.html on http://localhost:<port> registers a passkey for the user
//      (RegisterPasskey → navigator.credentials.create → VerifyPasskeyRegistration) and signs
//      in with it (CreateSession with a user check and a WebAuthN challenge →
//      navigator.credentials.get → SetSession with checks.webAuthN), all over gRPC-Web with
//      @zitadel/client; the session shows the WebAuthN factor with userVerified;
//   2. the first authenticator is removed and its credential (private key included) copied
//      into a second one with the signature counter reset, and the page signs in again:
//      sessiond refuses the cloned credential (its counter went backwards).

/** Runs the scenario; `server` is the running sessiond (url, passkeyToken, userId). */
export async function passkeyScenario(browser, server, { origin, check, screenshot }) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 420 } });
  const page = await context.newPage();
  const consoleLines = [];
  page.on("console", (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => consoleLines.push(`[pageerror] ${e.message}`));
  const cdp = await context.newCDPSession(page);
  await cdp.send("WebAuthn.enable", { enableUI: false });
  const options = {
    protocol: "ctap2",
    transport: "internal",
    hasResidentKey: true,
    hasUserVerification: true,
    isUserVerified: true,
    automaticPresenceSimulation: true,
  };
  const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", { options });

  const query = new URLSearchParams({ api: server.url, token: server.passkeyToken, userId: server.userId });
  await page.goto(`${origin}/passkey.html?${query}`);
  await page.waitForFunction(() => document.getElementById("status")?.dataset.state !== "running", null, {
    timeout: 30_000,
  });
  const rows = () =>
    page.evaluate(() =>
      Object.fromEntries(
        [...document.querySelectorAll("tr[id^=step-]")].map((tr) => [
          tr.id.slice(5),
          { ...tr.dataset, text: tr.querySelector(".result").textContent },
        ]),
      ),
    );
  let steps = await rows();
  const status = await page.evaluate(() => document.getElementById("status").dataset.state);
  if (status !== "done") console.error(JSON.stringify(steps, null, 2), "\n", consoleLines.join("\n"));
  check(steps.register.ok === "true", `passkey registered from ${origin}: ${steps.register.text}`);
  check(
    steps.signin.ok === "true" && steps.signin.userVerified === "true",
    `signed in with the passkey, factors.webAuthN.userVerified: ${steps.signin.text}`,
  );

  // A copy of the credential, its counter behind the one sessiond stored.
  const { credentials } = await cdp.send("WebAuthn.getCredentials", { authenticatorId });
  check(credentials.length === 1 && credentials[0].signCount >= 1, `the authenticator signed ${credentials[0]?.signCount} time(s)`);
  // Chromium allows one internal authenticator at a time: the original goes first.
  await cdp.send("WebAuthn.removeVirtualAuthenticator", { authenticatorId });
  const clone = await cdp.send("WebAuthn.addVirtualAuthenticator", { options });
  await cdp.send("WebAuthn.addCredential", {
    authenticatorId: clone.authenticatorId,
    credential: { ...credentials[0], signCount: 0 },
  });
  const cloned = await page.evaluate(() => window.signIn("clone"));
  steps = await rows();
  check(
    !cloned.ok && cloned.code === "InvalidArgument" && /counter/.test(cloned.text),
    `a cloned credential (counter 0 + 1 <= ${credentials[0].signCount}) is refused: ${cloned.text}`,
  );
  if (screenshot) {
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(`passkey screenshot: ${screenshot}`);
  }
  await context.close();
}
