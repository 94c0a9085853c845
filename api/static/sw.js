// Service worker: installable PWA, the app shell from cache when the network is down,
// and Web Push so an alert reaches a tablet whose page is in the background.
"use strict";
const SHELL = "nattillsyn-shell-v3";
const FILES = [
  "/", "/static/app.css", "/static/app.js", "/static/core.js", "/static/signin.js",
  "/static/locales/sv.json", "/static/locales/en.json",
  "/static/icon.svg", "/static/icon-192.png", "/static/manifest.webmanifest",
];

self.addEventListener("install", (ev) => {
  ev.waitUntil(caches.open(SHELL).then((c) => c.addAll(FILES)).then(() => self.skipWaiting()));
});
self.addEventListener("activate", (ev) => {
  ev.waitUntil(caches.keys().then((keys) => Promise.all(keys.filter((k) => k !== SHELL).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});
self.addEventListener("fetch", (ev) => {
  const url = new URL(ev.request.url);
  // Never cache the api: resident data stays off the tablet's disk.
  if (ev.request.method !== "GET" || url.pathname.startsWith("/api/")) return;
  ev.respondWith(fetch(ev.request).catch(() => caches.match(ev.request, { ignoreSearch: true })));
});
self.addEventListener("push", (ev) => {
  let a;
  try { a = ev.data ? ev.data.json() : {}; } catch (e) { a = { title: "nattillsyn" }; }
  const title = (a.practice ? "ÖVNING: " : "") + (a.title || "Larm");
  ev.waitUntil(self.registration.showNotification(title, {
    body: a.priority === "high" ? "Hög prioritet – kvittera" : "Kvittera i nattillsyn",
    tag: a.alert_id || "nattillsyn", renotify: true, requireInteraction: a.priority === "high",
    vibrate: a.priority === "high" ? [400, 200, 400, 200, 400] : [300],
    icon: "/static/icon.svg", data: { alert_id: a.alert_id },
  }));
});
self.addEventListener("notificationclick", (ev) => {
  ev.notification.close();
  ev.waitUntil(self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((cs) => {
    for (const c of cs) if ("focus" in c) return c.focus();
    return self.clients.openWindow("/");
  }));
});
