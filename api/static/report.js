// Evaluation report page: figures from /api/v1/evaluation/report, charts as inline SVG.
// Swedish first, English second. Nothing is stored in the browser but the language choice.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const SVGNS = "http://www.w3.org/2000/svg";
  const I18N = {
    sv: {
      title: "Utvärdering", logout: "Logga ut", signin: "Logga in", username: "Användarnamn",
      password: "Lösenord", wrong: "Fel användarnamn eller lösenord", unit: "Enhet",
      from: "Från natt", to: "Till natt", compare: "Jämför enheter", show: "Visa",
      loading: "Hämtar…", failed: "Kunde inte hämta rapporten", forbidden: "Din roll får inte se utvärderingar",
      ci_note: "Värden med 95 % konfidensintervall (bootstrap över boende).",
      trend: "Per vecka", before_after: "Före och efter införandet",
      awakenings: "Väckningar efter tillsyn", units: "Jämförelse mellan enheter",
      alerts: "Larm per typ och prioritet", residents: "Per boende (pseudonymer för just denna visning)",
      notes: "Sekretess och anmärkningar", downloads: "Ladda ner", baseline: "Nollmätning före införandet (CSV)",
      baseline_help: "Kolumner: unit, resident, night, planned_visits, unplanned_visits, minutes. Boende anges med enhetens pseudonymkod.",
      import: "Importera", imported: "rader importerade", refused: "Filen importerades inte",
      baseline_none: "Ingen nollmätning lagrad.", baseline_have: "Nollmätning lagrad",
      suppressed: "dold (< k boende)", none: "–",
      residents_n: "Boende", nights: "Boendenätter", visits_prn: "Fysiska besök per boendenatt",
      avoided: "Andel tillsyner klarade digitalt", saved: "Sparade personalminuter",
      staff_min: "Personalminuter på fysiska besök", wake_p: "Väckningar efter fysisk tillsyn",
      wake_d: "Aktivitet efter digital tillsyn", wake_diff: "Skillnad (fysisk − digital)",
      wake_excess: "Personalorsakade väckningar", alerts_100: "Larm per 100 boendenätter",
      false: "Andel falsklarm", ack: "Kvitteringstid median / p90",
      resp: "Tid till personal i rummet median / p90", coverage: "Sensortäckning",
      paused: "Pausade boendenätter", before: "Före", after: "Efter", period: "Period",
      minutes_prn: "Minuter per boendenatt", diff_visits: "Skillnad i besök per boendenatt",
      change: "Relativ förändring", diff_minutes: "Skillnad i minuter per boendenatt",
      kind: "Typ", priority: "Prioritet", count: "Larm", physical: "Fysiska besök",
      digital: "Undvikna (digitala)", baseline_line: "Före införandet", visits_night: "Besök/natt",
      pseudonym: "Pseudonym", html_report: "Rapport (HTML)",
      diff_note: "Skillnad mot andra enheter (denna minus den andra)",
    },
    en: {
      title: "Evaluation", logout: "Sign out", signin: "Sign in", username: "User name",
      password: "Password", wrong: "Wrong user name or password", unit: "Unit",
      from: "From night", to: "To night", compare: "Compare units", show: "Show",
      loading: "Loading…", failed: "Could not load the report", forbidden: "Your role may not see evaluations",
      ci_note: "Values with 95% confidence intervals (bootstrap over residents).",
      trend: "Per week", before_after: "Before and after introduction",
      awakenings: "Awakenings after checks", units: "Comparison between units",
      alerts: "Alerts by type and priority", residents: "Per resident (pseudonyms for this view only)",
      notes: "Confidentiality and notes", downloads: "Download", baseline: "Baseline before introduction (CSV)",
      baseline_help: "Columns: unit, resident, night, planned_visits, unplanned_visits, minutes. Residents by the unit's pseudonymous code.",
      import: "Import", imported: "rows imported", refused: "The file was not imported",
      baseline_none: "No baseline stored.", baseline_have: "Baseline stored",
      suppressed: "suppressed (< k residents)", none: "–",
      residents_n: "Residents", nights: "Resident-nights", visits_prn: "Physical visits per resident-night",
      avoided: "Share of rounds settled digitally", saved: "Staff minutes saved",
      staff_min: "Staff minutes on physical visits", wake_p: "Awakenings after a physical check",
      wake_d: "Activity after a digital check", wake_diff: "Difference (physical − digital)",
      wake_excess: "Staff-caused awakenings", alerts_100: "Alerts per 100 resident-nights",
      false: "False-alarm share", ack: "Acknowledgement time median / p90",
      resp: "Time to staff in the room median / p90", coverage: "Sensor coverage",
      paused: "Paused resident-nights", before: "Before", after: "After", period: "Period",
      minutes_prn: "Minutes per resident-night", diff_visits: "Difference in visits per resident-night",
      change: "Relative change", diff_minutes: "Difference in minutes per resident-night",
      kind: "Kind", priority: "Priority", count: "Alerts", physical: "Physical visits",
      digital: "Avoided (digital)", baseline_line: "Before introduction", visits_night: "Visits/night",
      pseudonym: "Pseudonym", html_report: "Report (HTML)",
      diff_note: "Difference from other units (this minus the other)",
    },
  };
  let lang = localStorage.getItem("lang") || "sv";
  const t = (k) => I18N[lang][k] ?? I18N.sv[k] ?? k;
  // Swedish first, English second: "Svenska / English" in headers of figures.
  const both = (k) => (lang === "sv" ? `${I18N.sv[k]} / ${I18N.en[k]}` : I18N.en[k]);
  const state = { me: null, report: null, query: null };
  window.nattillsynReport = state; // for tests

  function applyLang() {
    document.documentElement.lang = lang;
    document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    $("lang").textContent = lang === "sv" ? "English" : "Svenska";
    if (state.report) render(state.report);
  }
  $("lang").onclick = () => { lang = lang === "sv" ? "en" : "sv"; localStorage.setItem("lang", lang); applyLang(); };

  // State-changing requests return the session's CSRF token (set as a cookie at sign-in).
  function csrf() {
    const m = document.cookie.match(/(?:^|; )nattillsyn_csrf=([^;]*)/);
    return m ? decodeURIComponent(m[1]) : "";
  }
  async function api(method, path, body) {
    const headers = body === undefined ? {} : { "Content-Type": "application/json" };
    if (method !== "GET") headers["X-CSRF-Token"] = csrf();
    const r = await fetch(path, {
      method, credentials: "same-origin", headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = r.status === 204 ? null : await r.json().catch(() => null);
    if (!r.ok) throw Object.assign(new Error((data && data.detail) || r.statusText), { status: r.status, data });
    return data;
  }

  const el = (tag, attrs = {}, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) { if (k === "class") e.className = v; else e.setAttribute(k, v); }
    for (const kid of kids) e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    return e;
  };
  const fmt = (x, d = 2) => (x === null || x === undefined ? t("none") : x.toLocaleString(lang === "sv" ? "sv-SE" : "en-GB", { maximumFractionDigits: d, minimumFractionDigits: d }));
  const pct = (x) => (x === null || x === undefined ? t("none") : `${fmt(100 * x, 1)} %`);
  const secs = (x) => (x === null || x === undefined ? t("none") : x < 120 ? `${Math.round(x)} s` : `${fmt(x / 60, 1)} min`);
  function est(e, f = fmt) {
    if (!e || e.suppressed) return el("span", { class: "hidden-cell" }, t("suppressed"));
    if (e.value === null || e.value === undefined) return t("none");
    const span = el("span", {}, f(e.value));
    if (e.low !== null && e.low !== undefined) span.append(" ", el("span", { class: "ci" }, `(${f(e.low)} – ${f(e.high)})`));
    return span;
  }
  function table(id, headers, rows) {
    const tb = $(id);
    tb.replaceChildren(el("tr", {}, ...headers.map((h) => el("th", {}, h))));
    rows.forEach((r) => tb.append(el("tr", {}, ...r.map((c) => el("td", {}, c)))));
  }

  // --- charts ------------------------------------------------------------------------------
  function svg(w, h) {
    const s = document.createElementNS(SVGNS, "svg");
    s.setAttribute("viewBox", `0 0 ${w} ${h}`); s.setAttribute("width", w); s.setAttribute("height", h);
    s.setAttribute("role", "img");
    return s;
  }
  function add(parent, tag, attrs, text) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    parent.append(e); return e;
  }
  function lineChart(host, xs, series, hline) {
    const W = 760, H = 260, L = 48, R = 12, T = 14, B = 40;
    const s = svg(W, H);
    const all = series.flatMap((sr) => sr.values).concat(hline ? [hline.value] : []).filter((v) => v !== null);
    const ymax = Math.max(0.1, ...all) * 1.15;
    const x = (i) => L + (xs.length < 2 ? 0 : (i * (W - L - R)) / (xs.length - 1));
    const y = (v) => T + (H - T - B) * (1 - v / ymax);
    for (let k = 0; k <= 4; k++) {
      const v = (ymax * k) / 4;
      add(s, "line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e3e8ee" });
      add(s, "text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#567" }, fmt(v, 1));
    }
    const step = Math.max(1, Math.ceil(xs.length / 8));
    xs.forEach((d, i) => { if (i % step === 0) add(s, "text", { x: x(i), y: H - B + 16, "text-anchor": "middle", "font-size": 11, fill: "#567" }, d); });
    if (hline) {
      add(s, "line", { x1: L, x2: W - R, y1: y(hline.value), y2: y(hline.value), stroke: "#888", "stroke-dasharray": "5 4" });
      add(s, "text", { x: W - R, y: y(hline.value) - 4, "text-anchor": "end", "font-size": 11, fill: "#666" }, hline.label);
    }
    series.forEach((sr, si) => {
      const pts = sr.values.map((v, i) => (v === null ? null : `${x(i)},${y(v)}`)).filter(Boolean);
      add(s, "polyline", { points: pts.join(" "), fill: "none", stroke: sr.color, "stroke-width": 2 });
      add(s, "rect", { x: L + 10 + si * 230, y: H - 14, width: 12, height: 4, fill: sr.color });
      add(s, "text", { x: L + 27 + si * 230, y: H - 9, "font-size": 11, fill: "#234" }, sr.label);
    });
    host.replaceChildren(s);
  }
  function barChart(host, bars, scale = 1) {
    const W = 420, H = 220, L = 44, B = 36, T = 12;
    const s = svg(W, H);
    const ymax = Math.max(0.01, ...bars.map((b) => ((b.e && (b.e.high ?? b.e.value)) || 0) * scale)) * 1.15;
    const y = (v) => T + (H - T - B) * (1 - v / ymax);
    const bw = (W - L) / bars.length;
    for (let k = 0; k <= 4; k++) {
      const v = (ymax * k) / 4;
      add(s, "text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#567" }, fmt(v, 1));
      add(s, "line", { x1: L, x2: W, y1: y(v), y2: y(v), stroke: "#e3e8ee" });
    }
    bars.forEach((b, i) => {
      const cx = L + bw * i + bw / 2;
      if (!b.e || b.e.suppressed || b.e.value === null) {
        add(s, "text", { x: cx, y: H / 2, "text-anchor": "middle", "font-size": 11, fill: "#888" }, t("suppressed"));
      } else {
        const v = b.e.value * scale;
        add(s, "rect", { x: cx - bw * 0.3, y: y(v), width: bw * 0.6, height: y(0) - y(v), fill: b.color });
        if (b.e.low !== null && b.e.low !== undefined) {
          add(s, "line", { x1: cx, x2: cx, y1: y(b.e.low * scale), y2: y(b.e.high * scale), stroke: "#222", "stroke-width": 1.5 });
          [b.e.low, b.e.high].forEach((q) => add(s, "line", { x1: cx - 6, x2: cx + 6, y1: y(q * scale), y2: y(q * scale), stroke: "#222" }));
        }
      }
      add(s, "text", { x: cx, y: H - B + 18, "text-anchor": "middle", "font-size": 12, fill: "#234" }, b.label);
    });
    host.replaceChildren(s);
  }

  // --- render ------------------------------------------------------------------------------
  function render(r) {
    state.report = r;
    $("report").hidden = false;
    $("report-title").textContent = `${r.name} · ${r.start} – ${r.end}`;
    const s = r.summary;
    const rows = s.suppressed
      ? [[both("residents_n"), el("span", { class: "hidden-cell" }, t("suppressed"))]]
      : [
        [both("residents_n"), String(s.residents)], [both("nights"), String(s.resident_nights)],
        [both("visits_prn"), est(s.visits_per_resident_night)], [both("avoided"), est(s.avoided_share, pct)],
        [both("saved"), fmt(s.staff_minutes_saved, 0)], [both("staff_min"), fmt(s.staff_minutes, 0)],
        [both("wake_p"), est(s.awakening_rate_physical, pct)], [both("wake_d"), est(s.awakening_rate_digital, pct)],
        [both("wake_diff"), est(s.awakening_difference, pct)], [both("wake_excess"), est(s.staff_caused_awakenings, (x) => fmt(x, 0))],
        [both("alerts_100"), est(s.alerts_per_100_nights, (x) => fmt(x, 1))], [both("false"), est(s.false_alarm_share, pct)],
        [both("ack"), `${secs(s.ack_median_s)} / ${secs(s.ack_p90_s)}`],
        [both("resp"), `${secs(s.response_median_s)} / ${secs(s.response_p90_s)}`],
        [both("coverage"), est(s.coverage, pct)], [both("paused"), `${s.paused_nights} (${pct(s.paused_share)})`],
      ];
    table("key", ["", ""], rows);

    // Weekly trend from the per-night rows that are shown.
    const weeks = new Map();
    r.nights.filter((n) => !n.suppressed).forEach((n) => {
      const d = new Date(`${n.night}T00:00:00Z`); d.setUTCDate(d.getUTCDate() - ((d.getUTCDay() + 6) % 7));
      const k = d.toISOString().slice(0, 10);
      const w = weeks.get(k) || { rn: 0, visits: 0, digital: 0 };
      w.rn += n.residents; w.visits += n.visits; w.digital += n.digital_ok; weeks.set(k, w);
    });
    const wk = [...weeks.keys()].sort();
    const ba = r.before_after;
    const hl = ba && !ba.before.suppressed && ba.before.visits_per_resident_night.value !== null
      ? { value: ba.before.visits_per_resident_night.value, label: t("baseline_line") } : null;
    if (wk.length) {
      lineChart($("trend"), wk, [
        { label: t("physical"), color: "#1f77b4", values: wk.map((k) => weeks.get(k).visits / weeks.get(k).rn) },
        { label: t("digital"), color: "#ff7f0e", values: wk.map((k) => weeks.get(k).digital / weeks.get(k).rn) },
      ], hl);
    } else $("trend").replaceChildren();

    $("ba-section").hidden = !ba;
    if (ba) {
      const side = (x) => (x.suppressed
        ? [t(x.label), `${x.start || "?"} – ${x.end || "?"}`, el("span", { class: "hidden-cell" }, t("suppressed")), "", "", ""]
        : [t(x.label), `${x.start || "?"} – ${x.end || "?"}`, String(x.residents), String(x.resident_nights),
          est(x.visits_per_resident_night), est(x.minutes_per_resident_night)]);
      table("ba", ["", both("period"), both("residents_n"), both("nights"), both("visits_prn"), both("minutes_prn")],
        [side(ba.before), side(ba.after),
          [both("diff_visits"), "", "", "", est(ba.visits_difference), ""],
          [both("change"), "", "", "", est(ba.visits_change, pct), ""],
          [both("diff_minutes"), "", "", "", "", est(ba.minutes_difference)]]);
      barChart($("ba-chart"), [
        { label: t("before"), e: ba.before.visits_per_resident_night, color: "#999" },
        { label: t("after"), e: ba.after.visits_per_resident_night, color: "#1a7f4b" },
      ]);
    }
    barChart($("wake-chart"), [
      { label: t("wake_p"), e: s.awakening_rate_physical, color: "#c0632b" },
      { label: t("wake_d"), e: s.awakening_rate_digital, color: "#1a7f4b" },
    ], 100);

    $("units-section").hidden = r.units.length < 2;
    table("units", [t("unit"), both("residents_n"), both("visits_prn"), both("avoided"), both("wake_p"), both("false"), both("coverage")],
      r.units.map((u) => (u.suppressed
        ? [u.name, el("span", { class: "hidden-cell" }, t("suppressed")), "", "", "", "", ""]
        : [u.name, String(u.residents), est(u.visits_per_resident_night), est(u.avoided_share, pct),
          est(u.awakening_rate_physical, pct), est(u.false_alarm_share, pct), est(u.coverage, pct)])));

    table("diffs", [t("unit"), both("visits_prn"), both("avoided"), both("wake_p"), both("false"), both("coverage")],
      (r.differences || []).map((d) => (d.suppressed
        ? [d.name, el("span", { class: "hidden-cell" }, t("suppressed")), "", "", "", ""]
        : [d.name, est(d.visits_per_resident_night), est(d.avoided_share, pct), est(d.awakening_rate_physical, pct),
          est(d.false_alarm_share, pct), est(d.coverage, pct)])));

    table("alerts", [both("kind"), both("priority"), both("count"), both("false"), both("ack"), both("resp")],
      r.alerts.map((c) => (c.suppressed
        ? [c.kind, c.priority, el("span", { class: "hidden-cell" }, t("suppressed")), "", "", ""]
        : [c.kind, c.priority, String(c.alerts), pct(c.false_alarm_share),
          `${secs(c.ack_median_s)} / ${secs(c.ack_p90_s)}`, `${secs(c.response_median_s)} / ${secs(c.response_p90_s)}`])));

    $("res-section").hidden = !r.residents;
    if (r.residents) {
      table("residents", [t("pseudonym"), both("nights"), t("visits_night"), both("avoided"), both("wake_p"), both("wake_d"), both("count"), both("coverage")],
        r.residents.map((x) => [x.pseudonym, String(x.nights), fmt(x.visits_per_night), pct(x.avoided_share),
          `${x.woken_after_physical}/${x.checks_physical}`, `${x.woken_after_digital}/${x.checks_digital}`, String(x.alerts), pct(x.coverage)]));
    }
    $("notes").replaceChildren(...[`k = ${r.params.k_anonymity}`, ...r.notes].map((n) => el("li", {}, n)));

    const q = new URLSearchParams(state.query);
    const links = [el("a", { href: `/api/v1/evaluation/report.html?${q}` }, t("html_report"))];
    ["units", "differences", "alerts", "nights", "residents", "resident_nights", "before_after"].forEach((tb) => {
      ["csv", "parquet"].forEach((f) => {
        const qq = new URLSearchParams(q); qq.set("format", f);
        links.push(el("a", { href: `/api/v1/evaluation/export/${tb}?${qq}` }, `${tb}.${f}`));
      });
    });
    $("downloads").replaceChildren(...links);
  }

  async function load() {
    const q = { site: $("unit").value, from: $("from").value, to: $("to").value, compare: $("compare").checked ? "all" : "none" };
    state.query = q;
    $("status").textContent = t("loading");
    try {
      render(await api("GET", `/api/v1/evaluation/report?${new URLSearchParams(q)}`));
      $("status").textContent = "";
    } catch (e) {
      $("status").textContent = e.status === 403 ? t("forbidden") : `${t("failed")}: ${e.message}`;
    }
    baselineInfo();
  }

  async function baselineInfo() {
    try {
      const b = await api("GET", `/api/v1/evaluation/baseline?site=${encodeURIComponent($("unit").value)}`);
      $("baseline-info").textContent = b.nights ? `${t("baseline_have")}: ${b.first_night} – ${b.last_night} (${b.nights})` : t("baseline_none");
    } catch (e) { $("baseline-info").textContent = ""; }
  }

  $("query").onsubmit = (ev) => { ev.preventDefault(); load(); };
  $("baseline-form").onsubmit = async (ev) => {
    ev.preventDefault();
    const file = $("baseline-file").files[0];
    if (!file) return;
    $("baseline-errors").replaceChildren();
    try {
      const res = await api("POST", `/api/v1/evaluation/baseline?site=${encodeURIComponent($("unit").value)}`, { csv: await file.text(), source: file.name });
      $("baseline-result").textContent = `${res.rows} ${t("imported")}`;
      load();
    } catch (e) {
      $("baseline-result").textContent = `${t("refused")}: ${e.message}`;
      const errs = (e.data && e.data.errors) || [];
      $("baseline-errors").replaceChildren(...errs.slice(0, 20).map((x) => el("li", {}, x.line ? `${x.line}: ${x.message}` : x.message)));
    }
  };

  async function start() {
    $("login").hidden = true; $("app").hidden = false; $("logout").hidden = false;
    $("who").textContent = state.me.display_name;
    try {
      const { units } = await api("GET", "/api/v1/evaluation/units");
      $("unit").replaceChildren(...units.map((u) => el("option", { value: u.site }, u.name)));
    } catch (e) {
      $("status").textContent = e.status === 403 ? t("forbidden") : t("failed");
      return;
    }
    const y = new Date(); y.setDate(y.getDate() - 1);
    const f = new Date(y); f.setDate(f.getDate() - 89);
    $("to").value = y.toISOString().slice(0, 10); $("from").value = f.toISOString().slice(0, 10);
    load();
  }

  $("login").onsubmit = async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    try {
      state.me = await api("POST", "/api/v1/login", { username: f.get("username"), password: f.get("password") });
      ev.target.reset(); $("login-error").textContent = ""; start();
    } catch (e) { $("login-error").textContent = t("wrong"); }
  };
  $("logout").onclick = async () => {
    try { await api("POST", "/api/v1/logout"); } catch (e) { /* already out */ }
    location.reload();
  };

  applyLang();
  api("GET", "/api/v1/me").then((me) => { state.me = me; start(); }).catch(() => { $("login").hidden = false; });
})();
