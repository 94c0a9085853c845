// The sign-in form, written once for the three pages: each page has an empty
// <form data-signin> where its own script listens for submit; that script imports this
// module first, so the fields exist when it starts. Single sign-on adds a
// "Logga in med …" link to the provider and hides the password fields when this
// installation turned local passwords off; "Logga ut" then signs out at the provider too.
import { $, $$, api, el, t, translate } from "./core.js";

const label = (key, text, input) => el("label", {}, el("span", { "data-i18n": key, text }), input);

for (const form of $$("form[data-signin]")) {
  form.prepend(
    el("h2", { "data-i18n": "signin", text: "Logga in" }),
    label("username", "Användarnamn",
      el("input", { name: "username", autocomplete: "username", required: true })),
    label("password", "Lösenord",
      el("input", { name: "password", type: "password", autocomplete: "current-password", required: true })),
    el("button", { type: "submit", class: "primary", "data-i18n": "signin", text: "Logga in" }),
    el("p", { id: "login-error", class: "error", role: "alert" }),
  );
  translate(form);
}

const page = { "/admin": "/admin", "/report": "/report", "/static/report.html": "/report" }[location.pathname] || "/";

api("GET", "/api/v1/login/options")
  .then((o) => {
    const box = $("#login");
    if (!o || !box) return;
    if (o.sso) {
      const a = el("a", {
        id: "sso-login", class: "button primary", href: "/sso/login?next=" + encodeURIComponent(page),
        text: `${t("sso_signin")} ${o.sso_name}`, title: "Sign in with your organisation account",
      });
      ($("h2", box) || box.firstChild).after(a);
      const lock = $("#password-instead");  // the tablet's lock screen
      if (lock) {
        const b = a.cloneNode(true);
        b.id = "sso-login-lock";
        b.className = "button small";
        lock.before(b);
      }
    }
    if (!o.local_passwords) {
      const pw = $("#password-instead");
      if (pw) pw.hidden = true;
      $$("input[name=username], input[name=password], button[type=submit]", box)
        .forEach((x) => { (x.closest("label") || x).hidden = true; });
    }
  })
  .catch(() => {});

// Signed in through the provider: "Logga ut" also ends the provider's session
// (RP-initiated logout), so the next person on this device must sign in again.
document.addEventListener("click", (e) => {
  if (!e.target.closest || !e.target.closest("#logout")) return;
  if (!document.cookie.split("; ").includes("nattillsyn_sso=1")) return;
  e.preventDefault();
  e.stopImmediatePropagation();
  location.href = "/sso/logout?next=" + encodeURIComponent(page);
}, true);
