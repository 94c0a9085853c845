// Tablet app: shared-tablet PIN sign-in with quick switch and auto-lock, a live board over a
// WebSocket that reconnects by itself and replays what it missed, rounds, visits, practice.
import { $, $$, api, applyI18n, getLang, langButton, t, translate, usePage } from "./core.js";
import "./signin.js";  // the sign-in form: its fields exist before this page binds to it

usePage("tablet");
const state = {
  rooms: new Map(), alerts: new Map(), rounds: new Map(), visits: new Map(),
  ws: null, retry: 0, me: null, tablet: null, locked: false, cursor: 0, view: "board",
  lostAt: null, alertingOk: null,
};
// For tests and kiosk diagnostics: what the page has received; never resident data on disk.
window.nattillsyn = { state, sounds: 0, soundLog: [], reconnects: 0 };

langButton(() => render());

// ---- screens -------------------------------------------------------------------------
function show(which) {
  $("#login").hidden = which !== "login";
  $("#lock").hidden = which !== "lock";
  $("#app").hidden = which !== "app";
  $("#logout").hidden = which !== "app" || !!state.tablet;
  $("#switch").hidden = !(state.tablet && which === "app");
  $("#who").textContent = which === "app" && state.me ? state.me.display_name : "";
  $("#tablet-name").textContent = state.tablet ? state.tablet.name : "";
  const manager = state.me && ["unit_manager", "sysadmin"].includes(state.me.role);
  $("#practice-card").hidden = !manager;
  $("#enroll-card").hidden = !manager || !!state.tablet;
  render();
}

async function boot() {
  try { state.tablet = await api("GET", "/api/v1/tablet"); } catch (e) { state.tablet = null; }
  if (state.tablet && !state.tablet.enrolled) state.tablet = null;
  try {
    state.me = await api("GET", "/api/v1/me");
    enterApp();
  } catch (e) {
    state.me = null;
    if (state.tablet) enterLock(); else show("login");
  }
}

function enterApp() {
  state.locked = false; selectView("board"); show("app"); unlockAudio(); armIdle(); reconnect();
}
function enterLock() {
  // Nothing about residents stays in the page while it is locked: rooms, rounds and
  // visits are dropped and come back with the next staff member's snapshot.
  state.locked = true; state.me = null; disarmIdle();
  state.rooms.clear(); state.rounds.clear(); state.visits.clear();
  renderStaff(); show("lock"); reconnect();
}

$("#login-form").onsubmit = async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  try {
    state.me = await api("POST", "/api/v1/login", { username: f.get("username"), password: f.get("password") });
    $("#login-error").textContent = ""; ev.target.reset(); enterApp();
  } catch (e) { $("#login-error").textContent = t("wrong"); }
};
$("#enroll-code-form").onsubmit = async (ev) => {
  ev.preventDefault();
  try {
    state.tablet = await api("POST", "/api/v1/tablet/enroll", { code: new FormData(ev.target).get("code") });
    ev.target.reset(); enterLock();
  } catch (e) { $("#enroll-error").textContent = e.message; }
};
$("#logout").onclick = async () => {
  try { await api("POST", "/api/v1/logout"); } catch (e) { /* already signed out */ }
  state.me = null; closeWs(); show("login");
};
$("#switch").onclick = () => lockNow();
$("#password-instead").onclick = () => { closeWs(); show("login"); };

// ---- shared tablet: staff buttons, PIN pad, auto-lock ---------------------------------
function renderStaff() {
  const ul = $("#staff"); ul.replaceChildren();
  const staff = state.tablet ? state.tablet.staff : [];
  $("#no-staff").hidden = staff.length > 0;
  for (const s of staff) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button"; b.className = "staff-btn" + (s.recent ? " recent" : "");
    b.dataset.username = s.username; b.textContent = s.display_name;
    b.onclick = () => askPin(s);
    li.append(b); ul.append(li);
  }
}
let pinFor = null, pinDigits = "";
function askPin(s) {
  pinFor = s; pinDigits = ""; $("#pin-error").textContent = "";
  document.querySelector("#pin-dialog .pin-who").textContent = s.display_name;
  $("#pin-dots").textContent = "";
  unlockAudio();
  if (!$("#pin-dialog").open) $("#pin-dialog").showModal();
}
$$(".pinpad button").forEach((b) => {
  b.onclick = async () => {
    if (b.dataset.digit !== undefined) {
      if (pinDigits.length < 12) pinDigits += b.dataset.digit;
      $("#pin-dots").textContent = "●".repeat(pinDigits.length);
    } else if (b.dataset.key === "cancel") {
      $("#pin-dialog").close();
    } else if (b.dataset.key === "ok") {
      try {
        state.me = await api("POST", "/api/v1/tablet/signin", { username: pinFor.username, pin: pinDigits });
        $("#pin-dialog").close(); enterApp(); subscribePush();
      } catch (e) {
        pinDigits = ""; $("#pin-dots").textContent = "";
        $("#pin-error").textContent = e.status === 429 ? t("pin_locked") : t("pin_wrong");
      }
    }
  };
});
let idleTimer = null, lastActivityPost = 0;
function armIdle() {
  disarmIdle();
  if (!state.tablet) return;
  idleTimer = setTimeout(lockNow, state.tablet.auto_lock_s * 1000);
}
function disarmIdle() { if (idleTimer) clearTimeout(idleTimer); idleTimer = null; }
function onActivity() {
  if (!state.tablet || state.locked) return;
  armIdle();
  const now = Date.now();
  if (now - lastActivityPost > 60000) {
    lastActivityPost = now;
    api("POST", "/api/v1/tablet/activity").catch((e) => { if (e.status === 401) lockNow(); });
  }
}
["pointerdown", "keydown"].forEach((ev) => document.addEventListener(ev, onActivity, { passive: true }));
async function lockNow() {
  try { await api("POST", "/api/v1/tablet/lock"); } catch (e) { /* session already gone */ }
  try { state.tablet = await api("GET", "/api/v1/tablet"); } catch (e) { /* keep the old list */ }
  enterLock();
}
window.nattillsyn.lockNow = lockNow;

// ---- sound: a chime via WebAudio (unlocked by a tap), and vibration ----------------
let audio = null;
function unlockAudio() { try { audio = audio || new AudioContext(); audio.resume(); } catch (e) { audio = null; } }
function chime(a, why) {
  window.nattillsyn.sounds += 1;
  window.nattillsyn.soundLog.push({ alert_id: a.alert_id, why, at: Date.now(), priority: a.priority });
  if (navigator.vibrate) navigator.vibrate(a.priority === "high" ? [400, 200, 400, 200, 400] : [300]);
  if (!audio) return;
  const now = audio.currentTime;
  const tones = a.priority === "high" ? [988, 784, 988, 784] : a.priority === "medium" ? [880, 660] : [660];
  tones.forEach((f, i) => {
    const o = audio.createOscillator(), g = audio.createGain();
    o.frequency.value = f; g.gain.setValueAtTime(0.3, now + i * 0.25);
    g.gain.exponentialRampToValueAtTime(0.001, now + i * 0.25 + 0.22);
    o.connect(g).connect(audio.destination); o.start(now + i * 0.25); o.stop(now + i * 0.25 + 0.23);
  });
}

// ---- live connection: reconnect with back-off and replay by cursor -------------------
function closeWs() { const ws = state.ws; state.ws = null; if (ws) ws.close(); setConn("offline"); }
function reconnect() { closeWs(); state.retry = 0; connect(); }
function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const q = state.cursor ? `?after=${state.cursor}` : "";
  const ws = new WebSocket(`${proto}//${location.host}/api/v1/ws${q}`);
  state.ws = ws;
  ws.onopen = () => { state.retry = 0; setConn("online"); };
  ws.onmessage = (ev) => handle(JSON.parse(ev.data));
  ws.onclose = (ev) => {
    if (state.ws !== ws) return;
    setConn("reconnecting");
    window.nattillsyn.reconnects += 1;
    if (ev.code === 4401 && state.tablet) { lockNow(); return; }
    // Back off 0.5 s … 10 s; the next snapshot replays whatever was missed (by cursor).
    const delay = Math.min(10000, 500 * 2 ** state.retry++);
    setTimeout(async () => {
      if (state.ws !== ws) return;
      if (state.locked) { connect(); return; }
      try { state.me = await api("GET", "/api/v1/me"); connect(); }
      catch (e) {
        if (e.status === 401) { if (state.tablet) enterLock(); else { state.ws = null; show("login"); } }
        else connect();
      }
    }, delay);
  };
}
function setConn(s) {
  const el = $("#conn"); el.dataset.state = s; el.textContent = t(s);
  if (s === "online") state.lostAt = null; else if (!state.lostAt) state.lostAt = Date.now();
  checkSystem();
}

// Nothing silently stops: a lost connection or a silent alerting service is shown in
// red and sounded every minute until it is back (staff fall back to physical checks).
let warnedAt = 0;
function checkSystem() {
  if ($("#login").hidden === false && !state.tablet) { $("#system-warning").hidden = true; return; }
  let msg = null;
  if (state.lostAt && Date.now() - state.lostAt > 30000) msg = t("warn_connection");
  else if (state.alertingOk === false && state.lostAt === null) msg = t("warn_alerting");
  // On a care-home gateway's page: it alerts on site (informs, never chimes by itself).
  const mode = state.gatewayMode;
  const info = !msg && (mode === "fallback" || mode === "handback") ? t("gateway_" + mode) : null;
  const el = $("#system-warning");
  el.hidden = !(msg || info); el.textContent = msg || info || "";
  document.body.dataset.warning = !!(msg || info);
  if (msg && Date.now() - warnedAt > 60000) {
    warnedAt = Date.now();
    chime({ alert_id: "system", priority: "high" }, "system");
  }
  if (!msg) warnedAt = 0;
}
setInterval(checkSystem, 5000);

function takeAlert(a, fromSnapshot) {
  const old = state.alerts.get(a.alert_id);
  if (old && old.rev != null && a.rev != null && a.rev < old.rev) return;  // stale copy
  state.alerts.set(a.alert_id, a);
  if (a.rev != null) state.cursor = Math.max(state.cursor, a.rev);
  if (a.status === "firing" && !a.silenced && a.priority !== "info") {
    if (fromSnapshot ? !old : (a.sound || !old)) chime(a, a.notify || (fromSnapshot ? "missed" : "new"));
  } else if (a.status === "acknowledged" && a.sound && !fromSnapshot) chime(a, a.notify || "resound");
}

function handle(msg) {
  if (msg.type === "system") {
    if (msg.gateway_mode !== undefined) state.gatewayMode = msg.gateway_mode;
    state.alertingOk = msg.alerting_ok; checkSystem(); return;
  }
  if (msg.type === "snapshot") {
    state.alertingOk = msg.alerting_ok; checkSystem();
    state.cursor = Math.max(state.cursor, msg.cursor || 0);
    state.rooms = new Map(msg.rooms.map((r) => [r.id, r]));
    for (const a of msg.alerts) takeAlert(a, true);
    if (!msg.locked) {
      state.rounds = new Map(msg.rounds.map((r) => [r.id, r]));
      state.visits = new Map(msg.visits.map((v) => [v.id, v]));
    }
  } else if (msg.type === "alert") {
    takeAlert(msg.alert, false);
  } else if (msg.type === "state") {
    const r = state.rooms.get(msg.room);
    if (r) Object.assign(r, { state: msg.state, since: msg.since, updated: msg.updated });
  } else if (msg.type === "round") {
    state.rounds.set(msg.round.id, Object.assign(state.rounds.get(msg.round.id) || {}, msg.round));
  } else if (msg.type === "visit") {
    state.visits.set(msg.visit.id, msg.visit);
  }
  render();
}

// ---- rendering -------------------------------------------------------------------------
const ORDER = { firing: 0, acknowledged: 1, resolved: 2 };
const PRIO = { high: 0, medium: 1, low: 2, info: 3 };
function ago(iso) {
  if (!iso) return t("stale");
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  const txt = s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
  return getLang() === "sv" ? `för ${txt} ${t("ago")}` : `${txt} ${t("ago")}`;
}
function dur(iso) {
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  return s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
}
const hhmm = (iso) => new Date(iso).toLocaleTimeString(getLang() === "sv" ? "sv-SE" : "en-GB", { hour: "2-digit", minute: "2-digit" });

function sortedAlerts() {
  return [...state.alerts.values()].sort((a, b) =>
    ORDER[a.status] - ORDER[b.status] || PRIO[a.priority] - PRIO[b.priority] || b.started.localeCompare(a.started));
}

function alertItem(a, interactive) {
  const li = $("#alert-tpl").content.firstElementChild.cloneNode(true);
  li.dataset.alertId = a.alert_id; li.dataset.status = a.status; li.dataset.priority = a.priority;
  li.dataset.practice = !!a.practice; li.dataset.room = a.room;
  li.querySelector(".prio").textContent = `${a.practice ? t("practice_mode") + " · " : ""}${t(a.priority)} · ${t(a.status)}`;
  li.querySelector(".title").textContent = a.title;
  if (a.occurrences > 1) { const c = li.querySelector(".count"); c.hidden = false; c.textContent = `×${a.occurrences}`; }
  const room = state.rooms.get(a.room);
  let meta = `${room ? room.name : a.room} · ${ago(a.started)}`;
  if (a.acknowledged_by) meta += ` · ${t("acknowledged")} ${t("by")} ${a.acknowledged_by}`;
  if (a.resolved_by) meta += ` · ${t("resolved")} ${t("by")} ${a.resolved_by}`;
  if (a.outcome) meta += ` (${t(a.outcome)})`;
  if (a.escalation_step > 1) meta += ` · ${t("escalated")}`;
  if (a.silenced) meta += ` · ${t("silenced")}`;
  li.querySelector(".meta").textContent = meta;
  translate(li);
  const ack = li.querySelector(".ack"), res = li.querySelector(".resolve"), out = li.querySelector(".outcome");
  const visit = li.querySelector(".visit");
  const open = a.status !== "resolved";
  const visiting = [...state.visits.values()].some((v) => !v.ended_at && v.alert_id === a.alert_id);
  ack.hidden = !interactive || a.status !== "firing";
  res.hidden = out.hidden = !interactive || !open;
  visit.hidden = !interactive || !open || visiting;
  if (!interactive) {
    // Lock screen: one tap opens the PIN pad for the staff member who last worked here.
    li.onclick = () => { const s = state.tablet && state.tablet.staff[0]; if (s) askPin(s); };
  }
  const sil = li.querySelector(".silence");
  const manager = state.me && ["unit_manager", "sysadmin"].includes(state.me.role);
  sil.hidden = !interactive || !open || a.silenced || a.practice
    || (!manager && ["possible_fall", "on_floor"].includes(a.kind));
  sil.onclick = () => api("POST", "/api/v1/silences", {
    room: a.room, kinds: [a.kind], minutes: 30, reason: t("silence_reason"),
  }).catch(() => {});
  ack.onclick = () => act(a.alert_id, "acknowledge", {});
  res.onclick = () => act(a.alert_id, "resolve", { outcome: out.value });
  visit.onclick = () => startVisit(a.room, "alert", { alert_id: a.alert_id });
  return li;
}

function render() {
  const alerts = sortedAlerts();
  const anyPractice = alerts.some((a) => a.practice && a.status !== "resolved")
    || [...state.rounds.values()].some((r) => r.practice && !r.confirmed_at);
  $("#practice-flag").hidden = !anyPractice;
  document.body.dataset.practice = anyPractice;
  if (!$("#lock").hidden) {
    const list = $("#lock-alerts"); list.replaceChildren();
    const open = alerts.filter((a) => a.status !== "resolved");
    $("#lock-no-alerts").hidden = open.length > 0;
    for (const a of open) list.append(alertItem(a, false));
    return;
  }
  if ($("#app").hidden) return;
  const list = $("#alerts"); list.replaceChildren();
  const firing = alerts.filter((a) => a.status === "firing").length;
  $("#badge").hidden = firing === 0; $("#badge").textContent = firing;
  $("#no-alerts").hidden = alerts.some((a) => a.status !== "resolved");
  for (const a of alerts) list.append(alertItem(a, true));
  renderRooms(alerts); renderRounds(); renderVisits(); renderPracticeRooms();
}

function renderRooms(alerts) {
  const rooms = $("#rooms"); rooms.replaceChildren();
  const alerting = new Set(alerts.filter((a) => a.status !== "resolved").map((a) => a.room));
  const visiting = new Set([...state.visits.values()].filter((v) => !v.ended_at).map((v) => v.room));
  for (const r of state.rooms.values()) {
    const li = document.createElement("li");
    li.className = "room"; li.dataset.room = r.id; li.dataset.alert = alerting.has(r.id);
    const staleMs = r.updated ? Date.now() - Date.parse(r.updated) : Infinity;
    li.dataset.stale = staleMs > 180000 || r.device_online === false;
    li.dataset.monitored = r.monitored !== false;
    const name = document.createElement("span"); name.className = "name"; name.textContent = r.name;
    const who = document.createElement("span"); who.className = "resident"; who.textContent = r.resident || "";
    const st = document.createElement("span"); st.className = "state";
    st.textContent = r.monitored === false ? t("not_monitored")
      : t(`states.${r.state}`, r.state) + (r.since ? ` · ${dur(r.since)}` : "")
        + (r.device_online === false ? ` (${t("device_offline")})` : "");
    // Freshness: how old the newest report from the room is (not how long the state held).
    const fr = document.createElement("span"); fr.className = "fresh";
    fr.textContent = r.updated ? `${t("updated")} ${ago(r.updated)}` : t("stale");
    const b = document.createElement("button"); b.type = "button"; b.className = "small visit-room";
    b.textContent = visiting.has(r.id) ? `${t("visits")}: ${t("visit_open")}` : t("start_visit");
    b.disabled = visiting.has(r.id);
    b.onclick = () => startVisit(r.id, "unplanned", {});
    li.append(name, who, st, fr, b); rooms.append(li);
  }
}

function renderRounds() {
  const box = $("#rounds"); box.replaceChildren();
  const bySlot = new Map();
  const entriesSorted = [...state.rounds.values()].sort((a, b) =>
    a.scheduled_at.localeCompare(b.scheduled_at) || a.room.localeCompare(b.room));
  for (const r of entriesSorted) {
    const k = `${r.scheduled_at}|${r.practice}`;
    if (!bySlot.has(k)) bySlot.set(k, []);
    bySlot.get(k).push(r);
  }
  $("#no-rounds").hidden = bySlot.size > 0;
  for (const [, entries] of [...bySlot.entries()].reverse()) {
    const sec = document.createElement("section"); sec.className = "round";
    sec.dataset.practice = entries[0].practice;
    const h = document.createElement("h2");
    h.textContent = `${entries[0].practice ? t("practice_mode") + " · " : ""}${t("rounds")} ${hhmm(entries[0].scheduled_at)}`;
    const ul = document.createElement("ul"); ul.className = "round-entries";
    for (const e of entries) {
      const li = document.createElement("li");
      li.className = "round-entry"; li.dataset.decision = e.decision; li.dataset.id = e.id;
      const room = state.rooms.get(e.room);
      const top = document.createElement("div"); top.className = "entry-head";
      top.textContent = `${room ? room.name : e.room}${e.resident ? " · " + e.resident : ""}`;
      const sum = document.createElement("div"); sum.className = "summary";
      sum.textContent = summary(e) + (e.late ? ` (${t("late")})` : "");
      const dec = document.createElement("div"); dec.className = "decision"; dec.textContent = t(e.decision);
      li.append(top, sum, dec);
      if (e.decision === "physical_needed") {
        const v = [...state.visits.values()].find((x) => x.round_id === e.id);
        const b = document.createElement("button"); b.type = "button";
        if (!v) { b.textContent = t("start_visit"); b.onclick = () => startVisit(e.room, "round", { round_id: e.id }); }
        else if (!v.ended_at) { b.textContent = t("end_visit"); b.onclick = () => endVisit(v.id); }
        else { b.textContent = `✓ ${hhmm(v.started_at)}–${hhmm(v.ended_at)}`; b.disabled = true; }
        li.append(b);
      }
      if (e.confirmed_at) {
        const c = document.createElement("div"); c.className = "confirmed";
        c.textContent = `${t("confirmed")} ${t("by")} ${e.confirmed_by}`; li.append(c);
      }
      ul.append(li);
    }
    sec.append(h, ul);
    const pending = entries.filter((e) => !e.confirmed_at).map((e) => e.id);
    if (pending.length) {
      const b = document.createElement("button"); b.type = "button"; b.className = "primary confirm-round";
      b.textContent = t("confirm_round");
      b.onclick = () => api("POST", "/api/v1/rounds/confirm", { ids: pending }).catch(() => {});
      sec.append(b);
    }
    box.append(sec);
  }
}

// The stored summary is Swedish (what staff read and what is kept); other languages are
// rendered from the structured fields of the entry.
function summary(e) {
  if (getLang() === "sv" || !e.reason) return e.summary;
  const st = e.observed_state ? t(`states.${e.observed_state}`, e.observed_state) : "";
  const since = e.observed_since ? hhmm(e.observed_since) : "";
  const mins = e.observed_since
    ? Math.max(0, Math.floor((Date.parse(e.produced_at) - Date.parse(e.observed_since)) / 60000)) : 0;
  const text = {
    planned_physical: "Planned physical check",
    not_monitored: "Digital check not active (pause or no consent)",
    device_offline: "No data: the device does not respond",
    no_data: "No data",
    open_alert: `${st} – open alert`,
    low_confidence: `${st} (uncertain)`,
    in_bed_calm: `In bed, calm since ${since}`,
    in_bed_restless: `In bed, restless since ${since}`,
    in_chair: `In chair since ${since}`,
    in_bathroom: `In bathroom ${mins} min`, bathroom_long: `In bathroom ${mins} min`,
    up_briefly: `${st} ${mins} min`, up_long: `${st} ${mins} min`,
    device_paused: "Device paused",
  }[e.reason];
  return text || (since ? `${st} since ${since}` : st || e.summary);
}

function renderVisits() {
  const ul = $("#visits"); ul.replaceChildren();
  const visits = [...state.visits.values()].sort((a, b) => b.started_at.localeCompare(a.started_at));
  $("#no-visits").hidden = visits.length > 0;
  for (const v of visits) {
    const li = document.createElement("li"); li.className = "visit"; li.dataset.id = v.id;
    li.dataset.open = !v.ended_at; li.dataset.practice = !!v.practice;
    const room = state.rooms.get(v.room);
    const span = document.createElement("span");
    span.textContent = `${room ? room.name : v.room} · ${hhmm(v.started_at)}${v.ended_at ? "–" + hhmm(v.ended_at) : " · " + t("visit_open")} · ${t("r_" + v.reason)} · ${v.by_user}`;
    li.append(span);
    if (!v.ended_at) {
      const b = document.createElement("button"); b.type = "button"; b.className = "primary end-visit";
      b.textContent = t("end_visit"); b.onclick = () => endVisit(v.id); li.append(b);
    }
    ul.append(li);
  }
}

function renderPracticeRooms() {
  const sel = $("#practice-room");
  if (sel.options.length === state.rooms.size) return;
  sel.replaceChildren(...[...state.rooms.values()].map((r) => new Option(r.name, r.id)));
}

// ---- actions -----------------------------------------------------------------------------
function unauthorized() { if (state.tablet) lockNow(); else show("login"); }
async function act(id, action, body) {
  try { await api("POST", `/api/v1/alerts/${id}/${action}`, body); }
  catch (e) { if (e.status === 401) unauthorized(); }
}
async function startVisit(room, reason, extra) {
  try { const v = await api("POST", "/api/v1/visits", { room, reason, ...extra }); state.visits.set(v.id, v); render(); }
  catch (e) { if (e.status === 401) unauthorized(); }
}
async function endVisit(id) {
  try { const v = await api("POST", `/api/v1/visits/${id}/end`); state.visits.set(v.id, v); render(); }
  catch (e) { if (e.status === 401) unauthorized(); }
}
function selectView(view) {
  state.view = view;
  $$(".tabs button").forEach((x) => x.setAttribute("aria-selected", x.dataset.view === view));
  $$(".view").forEach((v) => { v.hidden = v.id !== `view-${view}`; });
}
$$(".tabs button").forEach((b) => { b.onclick = () => selectView(b.dataset.view); });
$("#practice-alert").onclick = async () => {
  try {
    await api("POST", "/api/v1/practice/alerts", { room: $("#practice-room").value, kind: $("#practice-kind").value });
    $("#practice-msg").textContent = t("practice_started");
  } catch (e) { $("#practice-msg").textContent = `${t("failed")}: ${e.message}`; }
};
$("#practice-round").onclick = async () => {
  try { await api("POST", "/api/v1/practice/rounds"); $("#practice-msg").textContent = t("practice_started"); }
  catch (e) { $("#practice-msg").textContent = `${t("failed")}: ${e.message}`; }
};
$("#pin-save").onclick = async () => {
  try {
    // Single sign-on staff have no password: right after signing in they leave it empty.
    const pw = $("#pin-password").value;
    await api("POST", "/api/v1/me/pin", { ...(pw ? { password: pw } : {}), pin: $("#pin-new").value });
    $("#pin-msg").textContent = t("saved"); $("#pin-password").value = $("#pin-new").value = "";
  } catch (e) { $("#pin-msg").textContent = `${t("failed")}: ${e.message}`; }
};
const groups = () => $("#enroll-groups").value.split(/[\s,]+/).map((g) => g.trim().toLowerCase()).filter(Boolean);
$("#enroll-here").onclick = async () => {
  try {
    state.tablet = await api("POST", "/api/v1/tablets", { name: $("#enroll-name").value, groups: groups() });
    $("#enroll-msg").textContent = t("enrolled"); show("app");
  } catch (e) { $("#enroll-msg").textContent = `${t("failed")}: ${e.message}`; }
};
$("#enroll-make-code").onclick = async () => {
  try {
    const c = await api("POST", "/api/v1/tablets/codes", { name: $("#enroll-name").value, groups: groups() });
    $("#enroll-msg").textContent = `${t("code_is")}: ${c.code} (${t("valid_until")} ${hhmm(c.expires_at)})`;
  } catch (e) { $("#enroll-msg").textContent = `${t("failed")}: ${e.message}`; }
};

// ---- PWA: service worker (installable, app shell offline) and Web Push ------------------
async function subscribePush() {
  try {
    if (!state.tablet || !state.tablet.vapid_public_key || !("serviceWorker" in navigator) || !("PushManager" in window)) return;
    if (Notification.permission === "default") await Notification.requestPermission();
    if (Notification.permission !== "granted") return;
    const reg = await navigator.serviceWorker.ready;
    const b64 = state.tablet.vapid_public_key.replace(/-/g, "+").replace(/_/g, "/");
    const key = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const sub = (await reg.pushManager.getSubscription())
      || (await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key }));
    const j = sub.toJSON();
    await api("POST", "/api/v1/tablet/push", { endpoint: j.endpoint, p256dh: j.keys.p256dh, auth: j.keys.auth });
  } catch (e) { /* push is an extra: the live connection still works */ }
}
if ("serviceWorker" in navigator) navigator.serviceWorker.register("/sw.js").catch(() => {});

setInterval(render, 15000);  // keep "x min ago" fresh
applyI18n();
render();
boot();
