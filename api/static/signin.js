// Single sign-on on the sign-in forms: a "Logga in med …" link to the provider, and the
// password fields hidden when this installation turned local passwords off.
import { $, $$, api, el, t } from "./core.js";

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
