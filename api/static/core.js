// The front end's shared core, imported by the three pages (tablet, administration,
// evaluation) and the sign-in helper: `api` (fetch with problem+json errors), `$`/`$$`,
// `el` (element builder) and `t` (translation from /static/locales/{sv,en}.json).
// Swedish first, English second: Swedish is the default and the fallback for every key.

// ---- elements ---------------------------------------------------------------------------
export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

// el("button", { type: "button", class: "small", text: "OK", onclick: f }, child, …):
// `text` sets textContent (never HTML), `on…` adds a listener, `value` the value, non-string
// values of properties (checked, selected, disabled…) set the property; null, undefined and
// false are left out. Children are nodes or strings (strings become text, never markup).
export function el(tag, attrs = {}, ...children) {
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

// ---- api --------------------------------------------------------------------------------
// The CSRF token of the session (a cookie set at sign-in), sent with every change.
export function csrf() {
  const m = document.cookie.match(/(?:^|; )nattillsyn_csrf=([^;]*)/);
  return m ? decodeURIComponent(m[1]) : "";
}

// The api's errors are RFC 9457 problem+json: the Error carries the problem's `detail`
// (else its title, else the status text) as message, `status`, and the problem as `data`.
export class ApiError extends Error {
  constructor(message, status, data) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.data = data;
  }
}

// `text: true` returns the body as text (an HTML page) instead of parsed JSON.
export async function api(method, path, body, { headers = {}, text: asText = false } = {}) {
  const h = { ...headers };
  if (body !== undefined) h["Content-Type"] = "application/json";
  if (method !== "GET") {
    const token = csrf();
    if (token) h["X-CSRF-Token"] = token;
  }
  const r = await fetch(path, {
    method, credentials: "same-origin", headers: h,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let data = null;
  if (text && (!r.ok || !asText)) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!r.ok) throw new ApiError(data?.detail || data?.title || r.statusText, r.status, data);
  return asText ? text : data;
}

// ---- translation ------------------------------------------------------------------------
export const LANGS = ["sv", "en"];
// A locale that cannot be fetched is empty: the pages then keep the Swedish in their HTML.
const DICTS = Object.fromEntries(await Promise.all(LANGS.map(async (l) => {
  try {
    const r = await fetch(`/static/locales/${l}.json`);
    return [l, r.ok ? await r.json() : {}];
  } catch {
    return [l, {}];
  }
})));
let lang = LANGS.includes(localStorage.getItem("lang")) ? localStorage.getItem("lang") : "sv";
let section = "common";

// Which page's strings `t` reads first (the locale files have one section per page and a
// `common` one for strings every page shares).
export function usePage(name) { section = name; }
export const getLang = () => lang;

function lookup(l, key) {
  const d = DICTS[l] || {};
  for (const part of [section, "common"]) {
    let v = d[part];
    for (const k of key.split(".")) v = v == null ? undefined : v[k];
    if (typeof v === "string") return v;
  }
  return undefined;
}
// The key in a given language (Swedish when that language lacks it).
export const tIn = (l, key, fallback) => lookup(l, key) ?? lookup("sv", key) ?? fallback ?? key;
// The key in the chosen language; dotted keys reach nested groups ("states.in_bed").
export const t = (key, fallback) => tIn(lang, key, fallback);

// Translate every [data-i18n] (text) and [data-i18n-placeholder] under root.
export function translate(root = document) {
  $$("[data-i18n]", root).forEach((e) => { e.textContent = t(e.dataset.i18n, e.textContent); });
  $$("[data-i18n-placeholder]", root).forEach((e) => { e.placeholder = t(e.dataset.i18nPlaceholder, e.placeholder); });
}

// The whole page: its texts, <html lang> and the language button (it shows the other one).
export function applyI18n() {
  document.documentElement.lang = lang;
  translate();
  const b = $("#lang");
  if (b) b.textContent = lang === "sv" ? "English" : "Svenska";
}

// The language button: switch, remember (shared by all pages), translate, then `after()`.
export function langButton(after = () => {}) {
  const b = $("#lang");
  if (b) {
    b.onclick = () => {
      lang = lang === "sv" ? "en" : "sv";
      localStorage.setItem("lang", lang);
      applyI18n();
      after();
    };
  }
}
