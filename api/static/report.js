// Evaluation page: choose a unit and a period, see the report, download it and its tables,
// import a baseline. The report itself is the server's one rendering (the same HTML that
// is downloaded and printed), shown here as it comes: nothing is drawn twice.
// Swedish first, English second. Nothing is stored in the browser but the language choice.
import { $, api, applyI18n, el, getLang, langButton, t, usePage } from "./core.js";
import "./signin.js";  // the sign-in form: its fields exist before this page binds to it

usePage("evaluation");
const state = { me: null, query: null, shown: null };
window.nattillsynReport = state; // for tests

langButton(() => { if (state.query) load(); });

const TABLES = ["units", "differences", "alerts", "nights", "residents", "resident_nights", "before_after"];

function downloads(q) {
  const html = new URLSearchParams({ ...q, lang: getLang() });
  const links = [el("a", { href: `/api/v1/evaluation/report.html?${html}`, text: t("html_report") })];
  for (const tb of TABLES) {
    for (const f of ["csv", "parquet"]) {
      const qq = new URLSearchParams({ ...q, format: f });
      links.push(el("a", { href: `/api/v1/evaluation/export/${tb}?${qq}`, text: `${tb}.${f}` }));
    }
  }
  $("#downloads").replaceChildren(...links);
  $("#downloads-section").hidden = false;
}

async function load() {
  const q = { site: $("#unit").value, from: $("#from").value, to: $("#to").value, compare: $("#compare").checked ? "all" : "none" };
  state.query = q;
  $("#status").textContent = t("loading");
  try {
    const page = await api("GET", `/api/v1/evaluation/report.html?${new URLSearchParams({ ...q, lang: getLang(), disposition: "inline" })}`,
      undefined, { text: true });
    // The server's page is autoescaped; only its <article> is taken (no scripts run in it).
    const report = new DOMParser().parseFromString(page, "text/html").querySelector("#report");
    $("#report-view").replaceChildren(document.adoptNode(report));
    state.shown = { ...q, lang: getLang() };
    downloads(q);
    $("#status").textContent = "";
  } catch (e) {
    $("#status").textContent = e.status === 403 ? t("forbidden") : `${t("failed")}: ${e.message}`;
  }
  baselineInfo();
}

async function baselineInfo() {
  try {
    const b = await api("GET", `/api/v1/evaluation/baseline?site=${encodeURIComponent($("#unit").value)}`);
    $("#baseline-info").textContent = b.nights ? `${t("baseline_have")}: ${b.first_night} – ${b.last_night} (${b.nights})` : t("baseline_none");
  } catch (e) { $("#baseline-info").textContent = ""; }
}

$("#query").onsubmit = (ev) => { ev.preventDefault(); load(); };
$("#baseline-form").onsubmit = async (ev) => {
  ev.preventDefault();
  const file = $("#baseline-file").files[0];
  if (!file) return;
  $("#baseline-errors").replaceChildren();
  try {
    const res = await api("POST", `/api/v1/evaluation/baseline?site=${encodeURIComponent($("#unit").value)}`, { csv: await file.text(), source: file.name });
    $("#baseline-result").textContent = `${res.rows} ${t("imported")}`;
    load();
  } catch (e) {
    $("#baseline-result").textContent = `${t("refused")}: ${e.message}`;
    const errs = (e.data && e.data.errors) || [];
    $("#baseline-errors").replaceChildren(...errs.slice(0, 20).map((x) => el("li", { text: x.line ? `${x.line}: ${x.message}` : x.message })));
  }
};

async function start() {
  $("#login").hidden = true; $("#app").hidden = false; $("#logout").hidden = false;
  $("#who").textContent = state.me.display_name;
  try {
    const { units } = await api("GET", "/api/v1/evaluation/units");
    $("#unit").replaceChildren(...units.map((u) => el("option", { value: u.site, text: u.name })));
  } catch (e) {
    $("#status").textContent = e.status === 403 ? t("forbidden") : t("failed");
    return;
  }
  const y = new Date(); y.setDate(y.getDate() - 1);
  const f = new Date(y); f.setDate(f.getDate() - 89);
  $("#to").value = y.toISOString().slice(0, 10); $("#from").value = f.toISOString().slice(0, 10);
  load();
}

$("#login").onsubmit = async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  try {
    state.me = await api("POST", "/api/v1/login", { username: f.get("username"), password: f.get("password") });
    ev.target.reset(); $("#login-error").textContent = ""; start();
  } catch (e) { $("#login-error").textContent = t("wrong"); }
};
$("#logout").onclick = async () => {
  try { await api("POST", "/api/v1/logout"); } catch (e) { /* already out */ }
  location.reload();
};

applyI18n();
api("GET", "/api/v1/me").then((me) => { state.me = me; start(); }).catch(() => { $("#login").hidden = false; });
