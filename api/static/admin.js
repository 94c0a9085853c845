// Administration: units, rooms, staff, residents' inclusion, devices, loggkontroll, export.
// Swedish first, English second. Every change goes through the open API with the CSRF token.
import { $, $$, api as coreApi, applyI18n, el, getLang, langButton, t, usePage } from "./core.js";
import "./signin.js";  // the sign-in form: its fields exist before this page binds to it

usePage("admin");
const S = { me: null, units: [], rooms: {}, presets: null, resident: null, tab: "residents", auditBefore: null };
window.nattillsynAdmin = S; // for tests and diagnostics

const fmt = (iso) => (iso ? new Date(iso).toLocaleString(getLang() === "sv" ? "sv-SE" : "en-GB") : "–");

// Every request says why it reads (the access log keeps the purpose).
const api = (method, path, body) => coreApi(method, path, body, { headers: { "X-Purpose": "administration" } });
function flash(msg, bad = false) {
  const f = $("#flash");
  f.textContent = msg; f.hidden = false; f.dataset.bad = bad ? "true" : "false";
  clearTimeout(flash.timer); flash.timer = setTimeout(() => { f.hidden = true; }, 4000);
}
async function act(fn) {
  try { const out = await fn(); flash(t("saved")); return out; }
  catch (e) { flash(`${t("failed")}: ${e.message}`, true); if (e.status === 401) showLogin(); return null; }
}

// -- language, sign-in, tabs ------------------------------------------------------------
langButton(() => show(S.tab));

function showLogin() {
  $("#login").hidden = false; $("#nav").hidden = true; $("#logout").hidden = true;
  $$(".tab").forEach((s) => { s.hidden = true; });
}
$("#login").onsubmit = async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  try {
    S.me = await api("POST", "/api/v1/login", { username: f.get("username"), password: f.get("password") });
    ev.target.reset(); $("#login-error").textContent = ""; await start();
  } catch (e) { $("#login-error").textContent = t(e.status === 429 ? "throttled" : "wrong"); }
};
$("#logout").onclick = async () => { try { await api("POST", "/api/v1/logout"); } catch (e) { /* gone */ } S.me = null; showLogin(); };
$$("#nav button").forEach((b) => { b.onclick = () => { S.auditResident = null; show(b.dataset.tab); }; });
$("#r-audit").onclick = () => { S.auditResident = S.resident.resident; show("audit"); };

async function start() {
  if (!["unit_manager", "sysadmin"].includes(S.me.role)) { $("#login-error").textContent = t("forbidden"); showLogin(); return; }
  $("#login").hidden = true; $("#nav").hidden = false; $("#logout").hidden = false;
  $("#who").textContent = `${S.me.display_name} · ${t("role_" + S.me.role)}`;
  $$("option[value=sysadmin]").forEach((o) => { o.hidden = S.me.role !== "sysadmin"; });
  await loadUnits();
  show("residents");
}
function show(tab) {
  S.tab = tab;
  $$(".tab").forEach((s) => { s.hidden = s.id !== `tab-${tab}`; });
  $$("#nav button").forEach((b) => { b.dataset.active = b.dataset.tab === tab || (tab === "resident" && b.dataset.tab === "residents"); });
  ({ residents: renderResidents, resident: renderResident, units: renderUnits, devices: renderDevices,
     staff: renderStaff, audit: () => renderAudit(false), export: renderExport })[tab]?.();
}

async function loadUnits() {
  const data = await api("GET", "/api/v1/units");
  S.units = data.units; S.org = data.organisation;
  const filter = $("#unit-filter");
  filter.replaceChildren(...S.units.map((u) => el("option", { value: u.id, text: u.name })));
  $("select[name=site]", $("#user-form")).replaceChildren(...S.units.map((u) => el("option", { value: u.id, text: u.name })));
  await Promise.all(S.units.map(loadRooms));
}
async function loadRooms(u) { S.rooms[u.id] = (await api("GET", `/api/v1/units/${encodeURIComponent(u.id)}/rooms`)).rooms; }
const unitName = (id) => S.units.find((u) => u.id === id)?.name ?? id;
const missingText = (m) => m.startsWith("criterion:") ? `${t("m_criterion")} ${m.slice(10)}` : t(`m_${m}`);

// -- residents ---------------------------------------------------------------------------
$("#unit-filter").onchange = () => renderResidents();
$("#new-resident").onclick = () => {
  const f = $("#resident-form"); const site = $("#unit-filter").value;
  const free = (S.rooms[site] || []).filter((r) => r.active && !r.resident_id);
  $("select[name=room]", f).replaceChildren(el("option", { value: "", text: "–" }),
    ...free.map((r) => el("option", { value: r.id, text: r.name })));
  f.hidden = false; $("input[name=display_name]", f).focus();
};
$("#resident-form .cancel").onclick = () => { $("#resident-form").hidden = true; };
$("#resident-form").onsubmit = async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const d = await act(() => api("POST", "/api/v1/residents",
    { site: $("#unit-filter").value, display_name: f.get("display_name"), room: f.get("room") || null }));
  if (d) { ev.target.reset(); ev.target.hidden = true; await loadRooms({ id: d.resident.site }); openResident(d.resident.id, d); }
};
async function renderResidents() {
  const site = $("#unit-filter").value;
  const data = await api("GET", `/api/v1/residents?site=${encodeURIComponent(site)}`);
  $("#residents tbody").replaceChildren(...data.residents.filter((r) => r.active).map((r) => el("tr",
    { "data-resident": r.id, class: "clickable", onclick: () => openResident(r.id) },
    el("td", { text: r.display_name }), el("td", { text: unitName(r.site) }), el("td", { text: r.room ?? "–" }),
    el("td", {}, statusBadge(r)), el("td", { class: "quiet", text: r.missing.map(missingText).join(", ") }))));
}
function statusBadge(r) {
  const s = r.monitoring_now ? "active_now" : r.monitoring_active ? "active_outside" : "inactive";
  return el("span", { class: "status", "data-monitoring": s, text: t(s) });
}

async function openResident(id, detail) {
  S.resident = detail || await api("GET", `/api/v1/residents/${id}`);
  if (!S.presets) S.presets = await api("GET", "/api/v1/risk-presets");
  show("resident");
}
$("#back").onclick = () => show("residents");

function renderResident() {
  const d = S.resident; if (!d) return;
  const r = d.resident, sec = $("#tab-resident");
  sec.dataset.resident = r.id;
  $("#r-name").textContent = `${r.display_name} · ${unitName(r.site)} · ${r.room ?? "–"}`;
  $("#r-status").replaceChildren(statusBadge(r));
  $("#r-missing").textContent = r.missing.length ? `${t("missing")}: ${r.missing.map(missingText).join(", ")}` : "";
  const done = { decision: !!d.inclusion.decision_reference, offer: d.inclusion.offer_answer === "accepted",
    criteria: !r.missing.some((m) => m.startsWith("criterion:")),
    consent: d.consents.some((c) => !c.withdrawn_at) && !r.missing.some((m) => m.startsWith("consent") || m === "cohabitant_consent"),
    schedule: true, alerting: true, device: !!d.device };
  $$(".step", sec).forEach((s) => { s.dataset.done = done[s.dataset.step] ? "true" : "false"; });

  const fp = $("#f-place");
  const free = (S.rooms[r.site] || []).filter((x) => x.active && (!x.resident_id || x.id === r.room));
  fp.room.replaceChildren(...free.map((x) => el("option", { value: x.id, text: x.name, selected: x.id === r.room })));
  fp.hidden = !r.active;

  const fd = $("#f-decision");
  fd.reference.value = d.inclusion.decision_reference ?? ""; fd.date.value = d.inclusion.decision_date ?? "";
  fd.note.value = d.inclusion.decision_note ?? "";
  const fo = $("#f-offer");
  $$("input[name=answer]", fo).forEach((i) => { i.checked = i.value === d.inclusion.offer_answer; });
  fo.physical_reason.value = d.inclusion.physical_reason ?? "";

  $(".criteria", $("#f-criteria")).replaceChildren(...d.criteria.map((c) => el("label", { class: "criterion" },
    el("span", { text: `${getLang() === "sv" ? c.label_sv : c.label_en}${c.required ? ` (${t("required")})` : ""}` }),
    el("select", { name: c.key, "data-criterion": c.key },
      ...["yes", "no", "unknown"].map((a) => el("option", { value: a, text: t(a), selected: c.answer === a })),
      c.answer ? null : el("option", { value: "", text: "–", selected: true })))));

  const fs = $("#f-schedule");
  fs.monitor_from.value = d.schedule.monitor_from.slice(0, 5); fs.monitor_to.value = d.schedule.monitor_to.slice(0, 5);
  $(".times", fs).replaceChildren(...d.schedule.tillsyn_times.map(timeRow));
  $(".pauses", fs).replaceChildren(...d.pauses.map((p) => el("li", { "data-pause": p.id },
    `${fmt(p.starts_at)} – ${fmt(p.ends_at)} ${p.reason ?? ""} `,
    new Date(p.ends_at) > new Date() ? el("button", { type: "button", class: "small end-pause", text: t("end_pause"),
      onclick: () => change("POST", `/pauses/${p.id}/end`, {}) }) : null)));

  const fc = $("#f-consent");
  $(".consents", fc).replaceChildren(...d.consents.map((c) => el("li", { "data-consent": c.id, "data-withdrawn": c.withdrawn_at ? "true" : "false" },
    el("strong", { text: c.given_by }), ` (${t(relKey(c.relation))}), ${fmt(c.given_at)} · `,
    c.scope.map((s) => t("scope_" + s)).join(", "),
    c.cohabitants.length ? ` · ${t("cohabitants")}: ${c.cohabitants.map((x) => `${x.name}${x.consented ? ` ✓` : ` ✗`}`).join(", ")}` : "",
    c.withdrawn_at ? el("span", { class: "withdrawn", text: ` · ${t("withdrawn")} ${fmt(c.withdrawn_at)} (${c.withdrawn_by})` })
      : el("button", { type: "button", class: "small danger withdraw", text: t("withdraw"), onclick: () => withdraw(c.id) }))));
  if (!fc.given_at.value) fc.given_at.value = localNow();

  const fa = $("#f-alerting");
  fa.risk_preset.replaceChildren(...S.presets.presets.map((p) => el("option",
    { value: p.name, text: getLang() === "sv" ? p.label_sv : p.label_en, selected: p.name === d.alerting.risk_preset })));
  const describe = () => { const p = S.presets.presets.find((x) => x.name === fa.risk_preset.value);
    $(".preset-description", fa).textContent = p ? (getLang() === "sv" ? p.description_sv : p.description_en) : ""; };
  fa.risk_preset.onchange = describe; describe();
  fa.rule_overrides.value = JSON.stringify(d.alerting.rule_overrides, null, 1);

  const fv = $("#f-device"), info = $(".device-info", fv);
  $(".claim", fv).hidden = true;
  $(".provision", fv).hidden = !!d.device || !r.room;
  if (!r.room) info.replaceChildren(el("p", { class: "quiet", text: t("no_room") }));
  else if (!d.device) { info.replaceChildren(); if (!fv.id.value) fv.id.value = `cam-${r.room}`; }
  else info.replaceChildren(deviceCard(d.device));
  loadHistory();
}
const relKey = (r) => ({ resident: "rel_resident", legal_representative: "rel_legal", relative: "rel_relative" })[r] || "rel_other";
function localNow() { const d = new Date(); d.setMinutes(d.getMinutes() - d.getTimezoneOffset()); return d.toISOString().slice(0, 16); }
function timeRow(tt = { at: "23:00", mode: "digital" }) {
  return el("li", { class: "time" }, el("input", { type: "time", value: tt.at.slice(0, 5), required: true }),
    el("select", {}, ...["digital", "physical"].map((m) => el("option", { value: m, text: t(m), selected: tt.mode === m }))),
    el("button", { type: "button", class: "small", text: t("remove"), onclick: (e) => e.target.closest("li").remove() }));
}
function deviceCard(v) {
  return el("div", { class: "device", "data-device": v.id, "data-health": v.health,
      "data-monitoring": v.desired_monitoring === null ? "unknown" : String(v.desired_monitoring) },
    el("strong", { text: v.name || v.id }), ` · ${t("h_" + v.health)} · ${t("heartbeat")}: ${fmt(v.last_heartbeat)}`,
    v.agent_version ? ` · v${v.agent_version}` : "", ` · ${t("config")} ${v.applied_version}/${v.desired_version}`,
    v.desired_monitoring === null ? "" : ` · ${t("monitoring")}: ${t(v.desired_monitoring ? "yes" : "no")}`,
    v.status === "provisioned" && v.claim_expires_at ? ` · ${t("claim_code")} → ${fmt(v.claim_expires_at)}` : "",
    el("details", { class: "settings" }, el("summary", { text: t("settings") }),
      el("textarea", { rows: 3, spellcheck: "false", value: JSON.stringify(v.settings) }),
      el("button", { type: "button", class: "small", text: t("save"), onclick: async (e) => {
        let settings; try { settings = JSON.parse(e.target.previousSibling.value || "{}"); } catch (err) { flash(`${t("failed")}: JSON`, true); return; }
        if (await act(() => api("PATCH", `/api/v1/units/${encodeURIComponent(v.site)}/devices/${encodeURIComponent(v.id)}`, { settings }))) {
          if (S.tab === "resident") await refreshResident(); else renderDevices(); } } })),
    el("div", { class: "row" },
      el("button", { type: "button", class: "small push", text: t("push"), onclick: () => deviceAction(v, "push") }),
      el("button", { type: "button", class: "small replace", text: t("replace"), onclick: () => deviceAction(v, "replace") }),
      el("button", { type: "button", class: "small danger retire", text: t("retire"), onclick: () => deviceAction(v, "retire") })));
}
async function deviceAction(v, what) {
  const base = `/api/v1/units/${encodeURIComponent(v.site)}/devices/${encodeURIComponent(v.id)}`;
  let out;
  if (what === "replace") {
    const id = prompt(t("new_device_id"), `${v.id}-2`); if (!id) return;
    out = await act(() => api("POST", `${base}/replace`, { new_id: id }));
    if (out) showClaim(out.claim_code);
  } else out = await act(() => api("POST", `${base}/${what}`, {}));
  if (S.tab === "resident") await refreshResident(); else renderDevices();
  if (what === "replace" && out) showClaim(out.claim_code);
}
function showClaim(code) {
  const p = $(".claim", $("#f-device")); $(".code", p).textContent = code; p.hidden = false;
  if (S.tab !== "resident") alert(`${t("claim_code")}: ${code}`);
}
async function refreshResident() { S.resident = await api("GET", `/api/v1/residents/${S.resident.resident.id}`); renderResident(); }
async function change(method, suffix, body) {
  const d = await act(() => api(method, `/api/v1/residents/${S.resident.resident.id}${suffix}`, body));
  if (d) { S.resident = d; renderResident(); }
  return d;
}
async function withdraw(id) {
  if (!confirm(t("confirm_withdraw"))) return;
  await change("POST", `/consents/${id}/withdraw`, {});
}
async function loadHistory() {
  const h = await api("GET", `/api/v1/residents/${S.resident.resident.id}/history`);
  $("#tab-resident .changes").replaceChildren(...h.changes.map((c) => el("li", {},
    el("strong", { text: `${fmt(c.at)} ${c.username} (${t("role_" + c.role)})` }), ` ${c.change}`,
    el("details", {}, el("summary", { text: t("before_after_change") }),
      el("pre", { text: `${JSON.stringify(c.before, null, 1)}\n→\n${JSON.stringify(c.after, null, 1)}` })))));
}

$("#f-place").onsubmit = async (ev) => { ev.preventDefault();
  const d = await change("PATCH", "", { room: ev.target.room.value });
  if (d) await loadRooms({ id: d.resident.site }); };
$("#f-place .discharge").onclick = async () => {
  if (!confirm(t("confirm_discharge"))) return;
  const d = await change("PATCH", "", { active: false });
  if (d) await loadRooms({ id: d.resident.site }); };
$("#f-decision").onsubmit = (ev) => { ev.preventDefault(); const f = ev.target;
  change("PUT", "/decision", { reference: f.reference.value, date: f.date.value, note: f.note.value || null }); };
$("#f-offer").onsubmit = (ev) => { ev.preventDefault(); const f = ev.target;
  const a = $("input[name=answer]:checked", f)?.value || "pending";
  change("PUT", "/offer", { answer: a, physical_reason: f.physical_reason.value || null }); };
$("#f-criteria").onsubmit = (ev) => { ev.preventDefault();
  const answers = $$("select[data-criterion]", ev.target).filter((s) => s.value).map((s) => ({ key: s.dataset.criterion, answer: s.value }));
  change("PUT", "/criteria", { answers }); };
$("#f-schedule .add-time").onclick = () => $("#f-schedule .times").append(timeRow());
$("#f-schedule .pause-tonight").onclick = () => change("POST", "/pauses", {});
$("#f-schedule").onsubmit = (ev) => { ev.preventDefault(); const f = ev.target;
  const times = $$(".times li", f).map((li) => ({ at: $("input", li).value, mode: $("select", li).value }));
  change("PUT", "/schedule", { monitor_from: f.monitor_from.value, monitor_to: f.monitor_to.value, tillsyn_times: times }); };
$("#f-consent .add-cohabitant").onclick = () => $("#f-consent .cohabitants").append(el("li", { class: "cohabitant" },
  el("input", { placeholder: t("name"), required: true }),
  el("label", { class: "inline" }, el("input", { type: "checkbox" }), ` ${t("cohabitant_consents")}`),
  el("button", { type: "button", class: "small", text: t("remove"), onclick: (e) => e.target.closest("li").remove() })));
$("#f-consent").onsubmit = async (ev) => { ev.preventDefault(); const f = ev.target;
  const body = { given_by: f.given_by.value, relation: f.relation.value, given_at: new Date(f.given_at.value).toISOString(),
    scope: $$("input[name=scope]:checked", f).map((i) => i.value),
    cohabitants: $$(".cohabitant", f).map((li) => ({ name: $("input", li).value, consented: $("input[type=checkbox]", li).checked })),
    note: f.note.value || null };
  if (await change("POST", "/consents", body)) { f.given_by.value = ""; f.note.value = ""; $(".cohabitants", f).replaceChildren(); } };
$("#f-alerting").onsubmit = (ev) => { ev.preventDefault(); const f = ev.target; let ov;
  try { ov = JSON.parse(f.rule_overrides.value || "{}"); } catch (e) { flash(`${t("failed")}: JSON`, true); return; }
  change("PUT", "/alerting", { risk_preset: f.risk_preset.value, rule_overrides: ov }); };
$("#f-device").onsubmit = async (ev) => { ev.preventDefault(); const f = ev.target, r = S.resident.resident;
  const out = await act(() => api("POST", `/api/v1/units/${encodeURIComponent(r.site)}/devices`,
    { id: f.id.value, room: r.room, name: f.name.value || null }));
  if (out) { await refreshResident(); showClaim(out.claim_code); } };

// -- units and rooms ------------------------------------------------------------------------
async function renderUnits() {
  await loadUnits();
  $("#org").textContent = S.org ? `${S.org.name}` : "";
  $("#unit-form").hidden = S.me.role !== "sysadmin";
  const boxes = [];
  for (const u of S.units) {
    const crit = await api("GET", `/api/v1/units/${encodeURIComponent(u.id)}/criteria`);
    boxes.push(el("div", { class: "card wide unit", "data-unit": u.id },
      el("h3", { text: `${u.name} (${u.id}) · ${t(u.kind)} · ${u.timezone}` }),
      el("ul", { class: "rooms" }, ...(S.rooms[u.id] || []).map((r) => el("li", { "data-room": r.id },
        `${r.name} (${r.id}) – ${r.resident_name ?? t("vacant")}${r.device ? ` · ${r.device}` : ""}`))),
      el("form", { class: "row add-room", onsubmit: async (ev) => { ev.preventDefault(); const f = ev.target;
        if (await act(() => api("POST", `/api/v1/units/${encodeURIComponent(u.id)}/rooms`, { id: f.id.value, name: f.name.value }))) renderUnits(); } },
        el("input", { name: "id", placeholder: t("room_id"), required: true, pattern: "[A-Za-z0-9_\\-]{1,64}" }),
        el("input", { name: "name", placeholder: t("room_name"), required: true }),
        el("button", { type: "submit", text: t("add_room") })),
      criteriaEditor(u, crit)));
  }
  $("#units").replaceChildren(...boxes);
}
function criteriaEditor(u, crit) {
  const row = (c = { key: "", label_sv: "", label_en: "", required: true }) => el("li", { class: "crit" },
    el("input", { value: c.key, placeholder: t("key"), pattern: "[a-z0-9_]{1,64}", required: true }),
    el("input", { value: c.label_sv, placeholder: "Svenska", required: true }),
    el("input", { value: c.label_en, placeholder: "English", required: true }),
    el("label", { class: "inline" }, el("input", { type: "checkbox", checked: c.required }), ` ${t("required")}`),
    el("button", { type: "button", class: "small", text: t("remove"), onclick: (e) => e.target.closest("li").remove() }));
  const list = el("ul", { class: "crits" }, ...crit.criteria.map(row));
  return el("details", {}, el("summary", { text: `${t("edit_criteria")} (${t(crit.own ? "own_criteria" : "default_criteria")})` }),
    el("form", { onsubmit: async (ev) => { ev.preventDefault();
      const criteria = $$("li", list).map((li) => { const i = $$("input", li);
        return { key: i[0].value, label_sv: i[1].value, label_en: i[2].value, required: i[3].checked }; });
      if (await act(() => api("PUT", `/api/v1/units/${encodeURIComponent(u.id)}/criteria`, { criteria }))) renderUnits(); } },
      list, el("button", { type: "button", class: "small", text: t("add_criterion"), onclick: () => list.append(row()) }),
      el("button", { type: "submit", class: "primary", text: t("save") })));
}
$("#unit-form").onsubmit = async (ev) => { ev.preventDefault(); const f = ev.target;
  if (await act(() => api("POST", "/api/v1/units", { id: f.id.value, name: f.name.value, kind: f.kind.value }))) { f.reset(); renderUnits(); } };

// -- devices, staff -----------------------------------------------------------------------------
async function renderDevices() {
  const data = await api("GET", "/api/v1/devices");
  $("#devices tbody").replaceChildren(...data.devices.map((v) => el("tr", { "data-device": v.id, "data-health": v.health },
    el("td", { text: `${v.name || v.id}${v.managed ? "" : ` (${t("unmanaged")})`}` }), el("td", { text: unitName(v.site) }),
    el("td", { text: v.room ?? "–" }), el("td", { class: `h-${v.health}`, text: t("h_" + v.health) }),
    el("td", { text: fmt(v.last_heartbeat) }), el("td", { text: v.agent_version ?? "–" }),
    el("td", { text: `${v.applied_version}/${v.desired_version}${v.desired_monitoring === null ? "" : v.desired_monitoring ? " ▶" : " ⏸"}` }),
    el("td", {}, v.managed && v.status !== "retired" ? [
      el("button", { type: "button", class: "small", text: t("push"), onclick: () => deviceAction(v, "push") }),
      el("button", { type: "button", class: "small", text: t("replace"), onclick: () => deviceAction(v, "replace") }),
      el("button", { type: "button", class: "small danger", text: t("retire"), onclick: () => deviceAction(v, "retire") })] : ""))));
}
async function renderStaff() {
  const data = await api("GET", "/api/v1/users");
  $("#users tbody").replaceChildren(...data.users.map((u) => el("tr", { "data-user": u.username },
    el("td", { text: u.username }), el("td", { text: u.display_name }), el("td", { text: t("role_" + u.role) }),
    el("td", { text: u.sites.map(unitName).join(", ") }), el("td", { text: t(u.active ? "yes" : "no") }),
    el("td", {}, u.username === S.me.username ? "" : [
      el("button", { type: "button", class: "small", text: t(u.active ? "deactivate" : "activate"),
        onclick: async () => { if (await act(() => api("PATCH", `/api/v1/users/${u.id}`, { active: !u.active }))) renderStaff(); } }),
      u.auth_provider === "password" ? el("button", { type: "button", class: "small", text: t("reset_password"),
        onclick: async () => { const pw = prompt(t("new_password")); if (pw) await act(() => api("PATCH", `/api/v1/users/${u.id}`, { password: pw })); } }) : null]))));
}
$("#user-form").onsubmit = async (ev) => { ev.preventDefault(); const f = ev.target;
  const body = { username: f.username.value, display_name: f.display_name.value, role: f.role.value,
    password: f.password.value, sites: f.role.value === "sysadmin" ? [] : [f.site.value] };
  if (await act(() => api("POST", "/api/v1/users", body))) { f.reset(); renderStaff(); } };

// -- loggkontroll, export ------------------------------------------------------------------------
function auditQuery() {
  const q = new URLSearchParams();
  if ($("#audit-user").value) q.set("user", $("#audit-user").value);
  if ($("#audit-action").value) q.set("action", $("#audit-action").value);
  if (S.auditResident) q.set("resident", S.auditResident.id);
  if ($("#audit-since").value) q.set("since", new Date($("#audit-since").value).toISOString());
  if ($("#audit-until").value) q.set("until", new Date($("#audit-until").value).toISOString());
  return q;
}
async function renderAudit(more) {
  const q = auditQuery(); if (more && S.auditBefore) q.set("before", S.auditBefore);
  $("#audit-resident").hidden = !S.auditResident;
  $("#audit-resident").textContent = S.auditResident ? `${t("only_resident")}: ${S.auditResident.display_name}` : "";
  $("#audit-csv").href = `/api/v1/audit.csv?${auditQuery()}`;
  const page = await api("GET", `/api/v1/audit?${q}`);
  const rows = page.entries.map((e) => el("tr", { "data-action": e.action },
    el("td", { text: fmt(e.at) }), el("td", { text: e.username }), el("td", { text: t("role_" + e.role) }),
    el("td", { text: t("act_" + e.action) }), el("td", { text: e.what }), el("td", { text: e.purpose }),
    el("td", { text: e.site ?? "" }), el("td", { text: e.room ?? "" })));
  if (more) $("#audit tbody").append(...rows); else $("#audit tbody").replaceChildren(...rows);
  S.auditBefore = page.next_before; $("#audit-more").hidden = !page.next_before;
}
$("#audit-search").onclick = () => renderAudit(false);
$("#audit-more").onclick = () => renderAudit(true);
async function renderExport() {
  const idx = await api("GET", "/api/v1/export");
  $("#datasets").replaceChildren(...idx.datasets.map((d) => el("li", {}, `${d.description} `,
    el("a", { href: `/api/v1/export/${d.name}?format=csv`, download: "", text: "CSV" }), " · ",
    el("a", { href: `/api/v1/export/${d.name}?format=json`, download: "", text: "JSON" }))));
}

// -- boot ------------------------------------------------------------------------------------------
applyI18n();
api("GET", "/api/v1/me").then((me) => { S.me = me; return start(); }).catch(showLogin);
