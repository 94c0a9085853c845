// Tablet app: sign in, then a live board over a WebSocket that reconnects by itself.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  let lang = localStorage.getItem("lang") || "sv";
  const t = (k) => (I18N[lang][k] ?? I18N.sv[k] ?? k);
  const state = { rooms: new Map(), alerts: new Map(), ws: null, retry: 0, me: null };
  // For tests and kiosk diagnostics: what the page has received, never resident data on disk.
  window.nattillsyn = { state, sounds: 0 };

  function applyLang() {
    document.documentElement.lang = lang;
    document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    $("lang").textContent = lang === "sv" ? "English" : "Svenska";
    render();
  }
  $("lang").onclick = () => { lang = lang === "sv" ? "en" : "sv"; localStorage.setItem("lang", lang); applyLang(); };

  async function api(method, path, body) {
    const r = await fetch(path, {
      method, credentials: "same-origin",
      headers: body === undefined ? {} : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!r.ok) throw Object.assign(new Error(r.statusText), { status: r.status });
    return r.status === 204 ? null : r.json();
  }

  function showLogin() { $("login").hidden = false; $("board").hidden = true; $("logout").hidden = true; }
  function showBoard() {
    $("login").hidden = true; $("board").hidden = false; $("logout").hidden = false;
    $("who").textContent = state.me ? state.me.display_name : "";
  }

  $("login").onsubmit = async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    try {
      state.me = await api("POST", "/api/v1/login", { username: f.get("username"), password: f.get("password") });
      $("login-error").textContent = ""; ev.target.reset(); unlockAudio(); showBoard(); connect();
    } catch (e) { $("login-error").textContent = t("wrong"); }
  };
  $("logout").onclick = async () => {
    try { await api("POST", "/api/v1/logout"); } catch (e) { /* already signed out */ }
    state.me = null; if (state.ws) state.ws.close(); state.ws = null; showLogin();
  };

  // Sound: a two-tone chime via WebAudio (unlocked by the sign-in tap), and vibration.
  let audio = null;
  function unlockAudio() { try { audio = audio || new AudioContext(); audio.resume(); } catch (e) { audio = null; } }
  function chime(priority) {
    window.nattillsyn.sounds += 1;
    if (navigator.vibrate) navigator.vibrate(priority === "high" ? [400, 200, 400] : [200]);
    if (!audio) return;
    const now = audio.currentTime;
    [880, 660].forEach((f, i) => {
      const o = audio.createOscillator(), g = audio.createGain();
      o.frequency.value = f; g.gain.setValueAtTime(0.25, now + i * 0.25);
      g.gain.exponentialRampToValueAtTime(0.001, now + i * 0.25 + 0.22);
      o.connect(g).connect(audio.destination); o.start(now + i * 0.25); o.stop(now + i * 0.25 + 0.23);
    });
  }

  function connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/api/v1/ws`);
    state.ws = ws;
    ws.onopen = () => { state.retry = 0; setConn("online"); };
    ws.onmessage = (ev) => handle(JSON.parse(ev.data));
    ws.onclose = (ev) => {
      if (state.ws !== ws) return;
      setConn("reconnecting");
      if (ev.code === 1008 || ev.code === 4401) { showLogin(); return; }
      // Back off 0.5 s … 10 s; the next snapshot replays whatever was missed.
      const delay = Math.min(10000, 500 * 2 ** state.retry++);
      setTimeout(async () => {
        try { state.me = await api("GET", "/api/v1/me"); connect(); }
        catch (e) { if (e.status === 401) showLogin(); else setTimeout(connect, delay); }
      }, delay);
    };
  }
  function setConn(s) { const el = $("conn"); el.dataset.state = s; el.textContent = t(s); }

  function handle(msg) {
    if (msg.type === "snapshot") {
      state.rooms = new Map(msg.rooms.map((r) => [r.id, r]));
      const before = state.alerts;
      state.alerts = new Map(msg.alerts.map((a) => [a.alert_id, a]));
      msg.alerts.filter((a) => a.status === "firing" && !before.has(a.alert_id)).forEach((a) => chime(a.priority));
    } else if (msg.type === "alert") {
      const a = msg.alert, old = state.alerts.get(a.alert_id);
      state.alerts.set(a.alert_id, a);
      if (a.status === "firing") chime(a.priority);  // new, or repeated until acknowledged
      else if (old && old.status === a.status) return;
    } else if (msg.type === "state") {
      const r = state.rooms.get(msg.room);
      if (r) Object.assign(r, { state: msg.state, since: msg.since, updated: msg.updated });
    }
    render();
  }

  const ORDER = { firing: 0, acknowledged: 1, resolved: 2 };
  const PRIO = { high: 0, medium: 1, low: 2, info: 3 };
  function ago(iso) {
    if (!iso) return t("stale");
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    const txt = s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
    return lang === "sv" ? `för ${txt} ${t("ago")}` : `${txt} ${t("ago")}`;
  }

  function render() {
    if ($("board").hidden) return;
    const list = $("alerts"); list.replaceChildren();
    const alerts = [...state.alerts.values()].sort((a, b) =>
      ORDER[a.status] - ORDER[b.status] || PRIO[a.priority] - PRIO[b.priority] || b.started.localeCompare(a.started));
    $("no-alerts").hidden = alerts.some((a) => a.status !== "resolved");
    for (const a of alerts) {
      const li = $("alert-tpl").content.firstElementChild.cloneNode(true);
      li.dataset.alertId = a.alert_id; li.dataset.status = a.status; li.dataset.priority = a.priority;
      li.querySelector(".prio").textContent = `${t(a.priority)} · ${t(a.status)}`;
      li.querySelector(".title").textContent = a.title;
      const room = state.rooms.get(a.room);
      let meta = `${room ? room.name : a.room} · ${ago(a.started)}`;
      if (a.acknowledged_by) meta += ` · ${t("acknowledged")} ${t("by")} ${a.acknowledged_by}`;
      li.querySelector(".meta").textContent = meta;
      li.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
      const ack = li.querySelector(".ack"), res = li.querySelector(".resolve"), out = li.querySelector(".outcome");
      ack.hidden = a.status !== "firing";
      res.hidden = out.hidden = a.status === "resolved";
      ack.onclick = () => act(a.alert_id, "acknowledge", {});
      res.onclick = () => act(a.alert_id, "resolve", { outcome: out.value });
      list.append(li);
    }
    const rooms = $("rooms"); rooms.replaceChildren();
    const alerting = new Set(alerts.filter((a) => a.status !== "resolved").map((a) => a.room));
    for (const r of state.rooms.values()) {
      const li = document.createElement("li");
      li.className = "room"; li.dataset.room = r.id; li.dataset.alert = alerting.has(r.id);
      const stale = !r.updated || r.device_online === false;
      li.dataset.stale = stale;
      const name = document.createElement("span"); name.className = "name"; name.textContent = r.name;
      const st = document.createElement("span"); st.className = "state";
      st.textContent = (I18N[lang].states[r.state] || r.state) + (r.device_online === false ? ` (${t("device_offline")})` : "");
      const fr = document.createElement("span"); fr.className = "fresh"; fr.textContent = r.since ? ago(r.since) : t("stale");
      li.append(name, st, fr); rooms.append(li);
    }
  }

  async function act(id, action, body) {
    try { await api("POST", `/api/v1/alerts/${id}/${action}`, body); }
    catch (e) { if (e.status === 401) showLogin(); }
  }

  setInterval(render, 15000);  // keep "x min ago" fresh
  applyLang();
  api("GET", "/api/v1/me").then((me) => { state.me = me; showBoard(); connect(); }).catch(showLogin);
})();
