// Administration: units, rooms, staff, residents' inclusion, devices, loggkontroll, export.
// Swedish first, English second. Every change goes through the open API with the CSRF token.
"use strict";
(() => {
  const I18N = {
    sv: {
      admin: "administration", residents: "Boende", units: "Enheter och rum", devices: "Sensorer",
      staff: "Personal", audit: "Loggkontroll", export: "Export", logout: "Logga ut",
      signin: "Logga in", username: "Användarnamn", password: "Lösenord",
      wrong: "Fel användarnamn eller lösenord", throttled: "För många försök, vänta en stund",
      forbidden: "Din roll har inte tillgång till administrationen",
      new_resident: "Ny boende", name: "Namn", room: "Rum", unit: "Enhet", create: "Skapa",
      cancel: "Avbryt", monitoring: "Övervakning", missing: "Saknas", back: "← Tillbaka",
      active_now: "Övervakning aktiv", active_outside: "Inkluderad – utanför övervakningstid eller pausad",
      inactive: "Övervakning ej aktiv", yes: "Ja", no: "Nej", unknown: "Vet ej",
      decision: "Biståndsbeslut", decision_ref: "Beslutsreferens", decision_date: "Beslutsdatum",
      note: "Anteckning", save: "Spara", offer: "Erbjudande",
      offer_default: "Digital tillsyn erbjuds som standard. Den boendes svar:",
      accepted: "Tackar ja till digital tillsyn", declined: "Tackar nej (fysisk tillsyn)",
      pending: "Har inte svarat än", physical_reason: "Skäl till fysisk tillsyn",
      criteria: "Inklusionskriterier", required: "krav", schedule: "Schema",
      monitor_from: "Övervakning från", monitor_to: "till", same_time: "Samma tid: hela dygnet.",
      tillsyn_times: "Överenskomna tillsynstider", add_time: "+ Lägg till tid",
      digital: "Digital", physical: "Fysisk", remove: "Ta bort", pauses: "Pauser",
      pause_tonight: "Pausa i natt", end_pause: "Avsluta paus", consent: "Samtycke",
      given_by: "Lämnat av", relation: "Relation", given_at: "Datum och tid", scope: "Omfattning",
      cohabitants: "Sammanboende", add_cohabitant: "+ Lägg till sammanboende",
      cohabitant_consents: "samtycker", record_consent: "Registrera samtycke",
      withdraw: "Återkalla samtycke", withdrawn: "återkallat", confirm_withdraw: "Återkalla samtycket? Övervakningen stoppas direkt.",
      rel_resident: "Den boende själv", rel_legal: "Legal företrädare", rel_relative: "Anhörig", rel_other: "Annan",
      scope_motion_analysis: "Rörelseanalys i rummet (ingen bild sparas)",
      scope_alerts_to_staff: "Larm till nattpersonal", scope_digital_rounds: "Digitala tillsynsrundor",
      scope_evaluation_pseudonymised: "Pseudonymiserad uppföljning",
      alerting: "Larmprofil", risk_preset: "Riskprofil", overrides: "Avvikande regler (JSON)",
      device: "Sensor i rummet", device_id: "Sensor-id", device_name: "Namn", provision: "Installera sensor",
      claim_code: "Aktiveringskod", claim_help: "Skriv på sensorn: nattillsyn claim KOD --api …",
      replace: "Byt sensor", retire: "Ta ur drift", push: "Skicka konfiguration", new_device_id: "Id för den nya sensorn:",
      no_room: "Placera den boende i ett rum först.", history: "Ändringshistorik",
      new_unit: "Ny enhet", id: "Id", kind: "Typ", care_home: "Särskilt boende", home_care: "Hemtjänstområde",
      add_room: "+ Lägg till rum", room_id: "Rum-id", room_name: "Rumsnamn", vacant: "ledigt",
      edit_criteria: "Enhetens inklusionskriterier", add_criterion: "+ Lägg till kriterium",
      own_criteria: "egna", default_criteria: "organisationens standard", key: "Nyckel",
      health: "Status", heartbeat: "Senaste livstecken", version: "Version", config: "Konfiguration",
      h_ok: "OK", h_stale: "Inga livstecken", h_offline: "Offline", h_never_seen: "Aldrig ansluten",
      h_config_pending: "Väntar på konfiguration", h_retired: "Ur drift", unmanaged: "ej installerad via admin",
      role: "Roll", active: "Aktiv", new_user: "Nytt konto", deactivate: "Inaktivera", activate: "Aktivera",
      role_night_staff: "Nattpersonal", role_unit_manager: "Enhetschef", role_evaluator: "Utvärderare",
      role_sysadmin: "Systemadministratör", role_device: "Sensor",
      user_filter: "Användare", all_actions: "Alla händelser", act_read: "Läsning", act_change: "Ändring",
      act_export: "Export", act_login: "Inloggning", act_logout: "Utloggning", search: "Sök",
      download_csv: "Ladda ner CSV", time: "Tid", user: "Användare", action: "Händelse", what: "Vad",
      purpose: "Syfte", more: "Visa äldre", export_all: "Ladda ner allt (zip)",
      export_help: "Organisationen äger all data. Ladda ner allt som CSV och JSON, eller en datamängd i taget.",
      openapi: "Öppet API (OpenAPI 3.1)", who_read: "Vem har läst?", only_resident: "Endast", saved: "Sparat", failed: "Kunde inte spara",
      m_decision: "biståndsbeslut", m_decision_in_future: "beslutet gäller inte än", m_offer_answer: "svar på erbjudandet",
      m_offer_declined: "erbjudandet avböjt", m_consent: "samtycke", m_consent_withdrawn: "samtycket återkallat",
      m_consent_scope: "samtycket omfattar inte rörelseanalys", m_cohabitant_consent: "sammanboendes samtycke",
      m_room: "rum", m_discharged: "utskriven", m_criterion: "kriterium",
      move_to: "Flytta till rum", move: "Flytta", discharge: "Skriv ut",
      confirm_discharge: "Skriva ut den boende? Övervakningen stoppas och rummet blir ledigt.",
      settings: "Analysinställningar (JSON)", reset_password: "Nytt lösenord",
      new_password: "Nytt lösenord (minst 10 tecken). Personen loggas ut överallt.",
      since: "Från", until: "Till", unit_list: "Enheter",
    },
    en: {
      admin: "administration", residents: "Residents", units: "Units and rooms", devices: "Devices",
      staff: "Staff", audit: "Access log", export: "Export", logout: "Sign out",
      signin: "Sign in", username: "User name", password: "Password",
      wrong: "Wrong user name or password", throttled: "Too many attempts, wait a while",
      forbidden: "Your role has no access to administration",
      new_resident: "New resident", name: "Name", room: "Room", unit: "Unit", create: "Create",
      cancel: "Cancel", monitoring: "Monitoring", missing: "Missing", back: "← Back",
      active_now: "Monitoring active", active_outside: "Included – outside the window or paused",
      inactive: "Monitoring not active", yes: "Yes", no: "No", unknown: "Unknown",
      decision: "Needs-assessment decision", decision_ref: "Decision reference", decision_date: "Decision date",
      note: "Note", save: "Save", offer: "Offer",
      offer_default: "Digital tillsyn is offered by default. The resident's answer:",
      accepted: "Accepts digital tillsyn", declined: "Declines (physical checks)",
      pending: "Has not answered yet", physical_reason: "Reason for physical checks",
      criteria: "Inclusion criteria", required: "required", schedule: "Schedule",
      monitor_from: "Monitoring from", monitor_to: "to", same_time: "Same time: round the clock.",
      tillsyn_times: "Agreed check times", add_time: "+ Add time",
      digital: "Digital", physical: "Physical", remove: "Remove", pauses: "Pauses",
      pause_tonight: "Pause tonight", end_pause: "End pause", consent: "Consent",
      given_by: "Given by", relation: "Relation", given_at: "Date and time", scope: "Scope",
      cohabitants: "Cohabitants", add_cohabitant: "+ Add cohabitant",
      cohabitant_consents: "consents", record_consent: "Record consent",
      withdraw: "Withdraw consent", withdrawn: "withdrawn", confirm_withdraw: "Withdraw the consent? Monitoring stops at once.",
      rel_resident: "The resident", rel_legal: "Legal representative", rel_relative: "Relative", rel_other: "Other",
      scope_motion_analysis: "Motion analysis in the room (no image kept)",
      scope_alerts_to_staff: "Alerts to night staff", scope_digital_rounds: "Digital check rounds",
      scope_evaluation_pseudonymised: "Pseudonymised evaluation",
      alerting: "Alert profile", risk_preset: "Risk preset", overrides: "Rule overrides (JSON)",
      device: "Device in the room", device_id: "Device id", device_name: "Name", provision: "Install device",
      claim_code: "Claim code", claim_help: "On the device: nattillsyn claim CODE --api …",
      replace: "Replace device", retire: "Retire", push: "Push config", new_device_id: "Id of the new device:",
      no_room: "Place the resident in a room first.", history: "Change history",
      new_unit: "New unit", id: "Id", kind: "Kind", care_home: "Care home", home_care: "Home-care area",
      add_room: "+ Add room", room_id: "Room id", room_name: "Room name", vacant: "vacant",
      edit_criteria: "The unit's inclusion criteria", add_criterion: "+ Add criterion",
      own_criteria: "own", default_criteria: "organisation default", key: "Key",
      health: "Health", heartbeat: "Last heartbeat", version: "Version", config: "Config",
      h_ok: "OK", h_stale: "No heartbeat", h_offline: "Offline", h_never_seen: "Never connected",
      h_config_pending: "Config pending", h_retired: "Retired", unmanaged: "not provisioned here",
      role: "Role", active: "Active", new_user: "New account", deactivate: "Deactivate", activate: "Activate",
      role_night_staff: "Night staff", role_unit_manager: "Unit manager", role_evaluator: "Evaluator",
      role_sysadmin: "System administrator", role_device: "Device",
      user_filter: "User", all_actions: "All actions", act_read: "Read", act_change: "Change",
      act_export: "Export", act_login: "Sign-in", act_logout: "Sign-out", search: "Search",
      download_csv: "Download CSV", time: "Time", user: "User", action: "Action", what: "What",
      purpose: "Purpose", more: "Show older", export_all: "Download everything (zip)",
      export_help: "The organisation owns all data. Download everything as CSV and JSON, or one dataset at a time.",
      openapi: "Open API (OpenAPI 3.1)", who_read: "Who has read this?", only_resident: "Only", saved: "Saved", failed: "Could not save",
      m_decision: "decision", m_decision_in_future: "decision not yet in force", m_offer_answer: "answer to the offer",
      m_offer_declined: "offer declined", m_consent: "consent", m_consent_withdrawn: "consent withdrawn",
      m_consent_scope: "consent does not cover motion analysis", m_cohabitant_consent: "cohabitants' consent",
      m_room: "room", m_discharged: "discharged", m_criterion: "criterion",
      move_to: "Move to room", move: "Move", discharge: "Discharge",
      confirm_discharge: "Discharge the resident? Monitoring stops and the room becomes free.",
      settings: "Analysis settings (JSON)", reset_password: "New password",
      new_password: "New password (at least 10 characters). The person is signed out everywhere.",
      since: "From", until: "To", unit_list: "Units",
    },
  };
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];
  let lang = localStorage.getItem("lang") || "sv";
  const t = (k) => I18N[lang][k] ?? I18N.sv[k] ?? k;
  const S = { me: null, units: [], rooms: {}, presets: null, resident: null, tab: "residents", auditBefore: null };
  window.nattillsynAdmin = S; // for tests and diagnostics

  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k === "text") e.textContent = v;
      else if (k === "value") e.value = v;
      else if (k in e && typeof v !== "string") e[k] = v;
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c);
    return e;
  }
  const fmt = (iso) => (iso ? new Date(iso).toLocaleString(lang === "sv" ? "sv-SE" : "en-GB") : "–");

  function csrf() {
    const m = document.cookie.match(/(?:^|; )nattillsyn_csrf=([^;]*)/);
    return m ? decodeURIComponent(m[1]) : "";
  }
  async function api(method, path, body) {
    const headers = { "X-Purpose": "administration" };
    if (method !== "GET") { headers["X-CSRF-Token"] = csrf(); headers["Content-Type"] = "application/json"; }
    const r = await fetch(path, { method, credentials: "same-origin", headers,
      body: method === "GET" ? undefined : JSON.stringify(body ?? {}) });
    const data = r.status === 204 ? null : await r.json().catch(() => null);
    if (!r.ok) throw Object.assign(new Error(data?.detail || r.statusText), { status: r.status, data });
    return data;
  }
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
  function applyLang() {
    document.documentElement.lang = lang;
    $$("[data-i18n]").forEach((e) => { e.textContent = t(e.dataset.i18n); });
    $$("[data-i18n-placeholder]").forEach((e) => { e.placeholder = t(e.dataset.i18nPlaceholder); });
    $("#lang").textContent = lang === "sv" ? "English" : "Svenska";
  }
  $("#lang").onclick = () => { lang = lang === "sv" ? "en" : "sv"; localStorage.setItem("lang", lang); applyLang(); show(S.tab); };

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
      el("span", { text: `${lang === "sv" ? c.label_sv : c.label_en}${c.required ? ` (${t("required")})` : ""}` }),
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
      { value: p.name, text: lang === "sv" ? p.label_sv : p.label_en, selected: p.name === d.alerting.risk_preset })));
    const describe = () => { const p = S.presets.presets.find((x) => x.name === fa.risk_preset.value);
      $(".preset-description", fa).textContent = p ? (lang === "sv" ? p.description_sv : p.description_en) : ""; };
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
      el("details", {}, el("summary", { text: "före / efter" }),
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
  applyLang();
  api("GET", "/api/v1/me").then((me) => { S.me = me; return start(); }).catch(showLogin);
})();
