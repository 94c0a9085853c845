// Swedish first, English second. Keys are used by app.js and data-i18n attributes.
window.I18N = {
  sv: {
    offline: "Ej ansluten", online: "Ansluten", reconnecting: "Återansluter…",
    signin: "Logga in", username: "Användarnamn", password: "Lösenord", logout: "Logga ut",
    wrong: "Fel användarnamn eller lösenord", alerts: "Larm", rooms: "Rum",
    noalerts: "Inga aktiva larm", ack: "Kvittera", resolve: "Åtgärdad",
    needed_help: "Behövde hjälp", not_needed: "Behövdes inte", false_alarm: "Falsklarm",
    firing: "Aktivt", acknowledged: "Kvitterat", resolved: "Åtgärdat",
    high: "Hög", medium: "Medel", low: "Låg", info: "Info",
    by: "av", ago: "sedan", stale: "inga data", device_offline: "enhet offline",
    states: {
      unknown: "Okänt", empty: "Tomt", in_bed: "I sängen", out_of_bed: "Ur sängen",
      in_chair: "I stolen", in_bathroom: "I badrummet", on_floor: "På golvet",
      left_room: "Lämnat rummet", no_motion: "Ingen rörelse", present: "I rummet",
      paused: "Pausad",
    },
  },
  en: {
    offline: "Not connected", online: "Connected", reconnecting: "Reconnecting…",
    signin: "Sign in", username: "User name", password: "Password", logout: "Sign out",
    wrong: "Wrong user name or password", alerts: "Alerts", rooms: "Rooms",
    noalerts: "No active alerts", ack: "Acknowledge", resolve: "Resolved",
    needed_help: "Needed help", not_needed: "Not needed", false_alarm: "False alarm",
    firing: "Firing", acknowledged: "Acknowledged", resolved: "Resolved",
    high: "High", medium: "Medium", low: "Low", info: "Info",
    by: "by", ago: "ago", stale: "no data", device_offline: "device offline",
    states: {
      unknown: "Unknown", empty: "Empty", in_bed: "In bed", out_of_bed: "Out of bed",
      in_chair: "In chair", in_bathroom: "In bathroom", on_floor: "On the floor",
      left_room: "Left room", no_motion: "No motion", present: "In the room",
      paused: "Paused",
    },
  },
};
