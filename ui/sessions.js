// How the account page shows sessions: a device name from a User-Agent, times, and the rows
// of a session table (built with DOM calls only: no HTML strings, so nothing a session holds
// is ever parsed as markup).

/** "Chrome on Linux" from a User-Agent header. */
export function deviceName(agent) {
  if (!agent) return "Unknown device";
  const browsers = [
    [/Edg(e|A|iOS)?\//, "Edge"],
    [/OPR\/|Opera/, "Opera"],
    [/SamsungBrowser\//, "Samsung Internet"],
    [/Firefox\/|FxiOS\//, "Firefox"],
    [/Chrome\/|CriOS\/|Chromium\//, "Chrome"],
    [/Version\/[\d.]+.*Safari\//, "Safari"],
  ];
  const systems = [
    [/Windows/, "Windows"],
    [/Android/, "Android"],
    [/iPhone|iPad|iPod/, "iOS"],
    [/CrOS/, "ChromeOS"],
    [/Mac OS X|Macintosh/, "macOS"],
    [/Linux|X11/, "Linux"],
  ];
  const browser = browsers.find(([re]) => re.test(agent))?.[1];
  const system = systems.find(([re]) => re.test(agent))?.[1];
  if (browser && system) return `${browser} on ${system}`;
  if (browser) return browser;
  if (system) return `A browser on ${system}`;
  // A program (curl/8.5.0, an SDK): its name.
  const program = /^([A-Za-z][\w.-]{0,40})\//.exec(agent);
  return program ? program[1] : "Unknown device";
}

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

function timeCell(iso, none) {
  if (!iso) return document.createTextNode(none);
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return document.createTextNode(iso);
  const time = document.createElement("time");
  time.dateTime = iso;
  time.textContent = dateFormat.format(date);
  return time;
}

/** A session of the self-service face (Kratos' shape) in the page's terms. */
export function fromKratos(s) {
  const device = s.devices?.[0] ?? {};
  return {
    id: s.id,
    agent: device.user_agent ?? "",
    ip: device.ip_address ?? "",
    created: s.issued_at,
    lastActive: s.authenticated_at,
    expires: s.expires_at,
  };
}

/** A session of the admin face in the page's terms. */
export function fromAdmin(s) {
  return {
    id: s.id,
    agent: s.userAgent ?? "",
    ip: s.ipAddress ?? "",
    created: s.createdAt,
    lastActive: s.lastActive,
    expires: s.expiresAt,
  };
}

const COLUMNS = ["Device", "IP address", "Created", "Last active", "Expires", "Actions"];

function cell(row, index, content) {
  const td = document.createElement("td");
  td.setAttribute("role", "cell");
  td.dataset.label = COLUMNS[index];
  if (index === COLUMNS.length - 1) td.className = "action";
  if (typeof content === "string") td.textContent = content;
  else if (content) td.append(content);
  row.append(td);
  return td;
}

/** One table row; `action` is a button (or text) for the last column. */
export function sessionRow(session, { current = false, action }) {
  const tr = document.createElement("tr");
  tr.setAttribute("role", "row");
  tr.dataset.sessionId = session.id;
  const device = document.createElement("span");
  device.className = "device";
  device.textContent = deviceName(session.agent);
  if (session.agent) device.title = session.agent;
  if (current) {
    tr.className = "current";
    tr.dataset.current = "true";
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = "This browser";
    device.append(" ", badge);
  }
  cell(tr, 0, device);
  cell(tr, 1, session.ip || "Unknown");
  cell(tr, 2, timeCell(session.created, "Unknown"));
  cell(tr, 3, timeCell(session.lastActive, "Unknown"));
  cell(tr, 4, timeCell(session.expires, "Never"));
  cell(tr, 5, action);
  return tr;
}

export function revokeButton(session, label, onClick) {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = "Revoke";
  button.dataset.revoke = session.id;
  button.setAttribute("aria-label", `Revoke ${label}`);
  button.addEventListener("click", () => onClick(button));
  return button;
}

export function emptyRow(text) {
  const tr = document.createElement("tr");
  tr.setAttribute("role", "row");
  const td = document.createElement("td");
  td.setAttribute("role", "cell");
  td.colSpan = COLUMNS.length;
  td.className = "empty";
  td.textContent = text;
  tr.append(td);
  return tr;
}

/** The column headers of a session table, and table semantics (explicit roles) that
 * survive the phone layout's `display: block`. */
export function sessionTable(table) {
  const head = table.createTHead();
  head.setAttribute("role", "rowgroup");
  const tr = head.insertRow();
  tr.setAttribute("role", "row");
  COLUMNS.forEach((name, i) => {
    const th = document.createElement("th");
    th.scope = "col";
    th.setAttribute("role", "columnheader");
    if (i === COLUMNS.length - 1) {
      const hidden = document.createElement("span");
      hidden.className = "visually-hidden";
      hidden.textContent = name;
      th.append(hidden);
    } else {
      th.textContent = name;
    }
    tr.append(th);
  });
  table.setAttribute("role", "table");
  table.tBodies[0].setAttribute("role", "rowgroup");
}
