// Browser test of the session event feed: a tab learns that its session was ended elsewhere.
//
//   1. a session of the user is created through the API (CreateSession, REST) and its token
//      set as sessiond's session cookie, as the sign-in would;
//   2. a page on sessiond's origin opens `new EventSource("/auth/sessions/events")` (the
//      browser sends the cookie; EventSource cannot set headers) and waits until it is open;
//   3. the test deletes the session through the API (DeleteSession, REST, as an
//      administrator): the page receives a `session.terminated` event for its own session,
//      with the reason and a cursor as the event id;
//   4. the server then ends the stream; the browser's reconnect is refused (401), so the
//      EventSource ends up CLOSED instead of reconnecting forever.

/** Runs the scenario against `server` (from run.mjs); `check(condition, message)` reports. */
export async function feedScenario(browser, server, { login, password, check }) {
  const created = await fetch(`${server.url}/v2/sessions`, {
    method: "POST",
    headers: { authorization: `Bearer ${server.token}`, "content-type": "application/json" },
    body: JSON.stringify({ checks: { user: { loginName: login }, password: { password } } }),
  });
  const session = await created.json();
  check(created.status === 201 && session.sessionToken, `feed: a session ${session.sessionId} to watch`);

  const context = await browser.newContext();
  await context.addCookies([{ name: "sessiond_session", value: session.sessionToken, url: server.url }]);
  const page = await context.newPage();
  try {
    await page.goto(`${server.url}/healthz`);
    await page.evaluate(() => {
      window.__feed = { open: false, events: [], errors: 0 };
      const source = new EventSource("/auth/sessions/events");
      window.__source = source;
      source.onopen = () => {
        window.__feed.open = true;
      };
      source.onerror = () => {
        window.__feed.errors += 1;
      };
      source.addEventListener("session.terminated", (e) => {
        window.__feed.events.push({ id: e.lastEventId, data: JSON.parse(e.data) });
      });
    });
    await page.waitForFunction(() => window.__feed.open, null, { timeout: 10_000 });
    check(true, "feed: EventSource on /auth/sessions/events is open (session cookie)");

    const deleted = await fetch(`${server.url}/v2/sessions/${session.sessionId}`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${server.token}`, "content-type": "application/json" },
      body: "{}",
    });
    check(deleted.status === 200, `feed: the session was deleted elsewhere (${deleted.status})`);

    await page.waitForFunction(() => window.__feed.events.length > 0, null, { timeout: 10_000 });
    const [event] = await page.evaluate(() => window.__feed.events);
    check(
      event.data.sessionId === session.sessionId &&
        event.data.type === "SESSION_EVENT_TYPE_TERMINATED" &&
        event.data.reason === "TERMINATION_REASON_DELETED" &&
        event.id === event.data.cursor,
      `feed: the page saw its own session end: ${JSON.stringify(event)}`,
    );

    await page.waitForFunction(() => window.__source.readyState === EventSource.CLOSED, null, {
      timeout: 15_000,
    });
    check(true, "feed: after the session ended, the reconnect is refused and the EventSource is closed");
  } finally {
    await context.close();
  }
}
