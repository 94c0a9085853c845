// Single sign-on on the sign-in forms: a "Logga in med …" link to the provider, and the
// password fields hidden when this installation turned local passwords off.
(function () {
  const page = { "/admin": "/admin", "/report": "/report", "/static/report.html": "/report" }[location.pathname] || "/";
  fetch("/api/v1/login/options", { credentials: "same-origin" })
    .then((r) => (r.ok ? r.json() : null))
    .then((o) => {
      if (!o) return;
      const box = document.getElementById("login");
      if (!box) return;
      if (o.sso) {
        const a = document.createElement("a");
        a.id = "sso-login";
        a.className = "button primary";
        a.href = "/sso/login?next=" + encodeURIComponent(page);
        a.textContent = "Logga in med " + o.sso_name;
        a.title = "Sign in with your organisation account";
        const h = box.querySelector("h2");
        (h || box.firstChild).after(a);
        const lock = document.getElementById("password-instead");  // the tablet's lock screen
        if (lock) {
          const b = a.cloneNode(true);
          b.id = "sso-login-lock";
          b.className = "button small";
          lock.before(b);
        }
      }
      if (!o.local_passwords) {
        const pw = document.getElementById("password-instead");
        if (pw) pw.hidden = true;
        box.querySelectorAll("input[name=username], input[name=password], button[type=submit]")
          .forEach((el) => { (el.closest("label") || el).hidden = true; });
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
})();
