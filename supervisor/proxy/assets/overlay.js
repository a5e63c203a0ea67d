/* Streamlit Cloud overlay: the "Manage app" button, its side panel and the favorite star.
   The proxy injects this into the HTML pages of hosted apps. It talks only to /__stcloud/
   on this host, renders in a shadow root (no reliance on Streamlit's class names, no
   styles leaking either way) and does nothing inside frames. */
(function () {
  "use strict";
  if (window.top !== window.self || window.__stcloudOverlay) return;
  window.__stcloudOverlay = true;
  var BASE = "/__stcloud/";
  var me = null, root = null, panel = null, frame = null, manage = null, star = null;
  var note = null;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text) node.textContent = text;
    return node;
  }

  function say(text) {
    note.textContent = text;
    note.hidden = false;
    setTimeout(function () { note.hidden = true; }, 4000);
  }

  function post(path, body) {
    return fetch(BASE + path, {
      method: "POST", credentials: "same-origin", cache: "no-store",
      headers: { "Content-Type": "application/json", "X-Stcloud-CSRF": me.csrf },
      body: JSON.stringify(body || {})
    }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    });
  }

  function setStar(on) {
    star.setAttribute("aria-pressed", on ? "true" : "false");
    star.setAttribute("aria-label", on ? "Remove from favorites" : "Add to favorites");
    star.title = on ? "Unfavorite this app" : "Favorite this app";
    star.textContent = on ? "\u2605" : "\u2606";
  }

  function renderStar(ui) {
    star = el("button", { type: "button", "class": "star", "data-stcloud": "star" });
    setStar(!!me.favorite);
    star.addEventListener("click", function () {
      var want = star.getAttribute("aria-pressed") !== "true";
      star.disabled = true;
      post("favorite", { favorite: want }).then(function (d) {
        setStar(!!d.favorite);
        say(d.favorite ? "Added to your favorites." : "Removed from your favorites.");
      }).catch(function () {
        say("Could not change the favorite. Reload the page and try again.");
      }).then(function () { star.disabled = false; });
    });
    ui.appendChild(star);
  }

  function openPanel() {
    if (!frame) {
      frame = el("iframe", { "class": "frame", title: "Manage app: logs and settings",
                             src: me.panel_url });
      panel.appendChild(frame);
    }
    panel.hidden = false;
    manage.hidden = true;
    manage.setAttribute("aria-expanded", "true");
    panel.querySelector(".close").focus();
  }

  function closePanel() {
    panel.hidden = true;
    manage.hidden = false;
    manage.setAttribute("aria-expanded", "false");
    manage.focus();
  }

  function renderManage(ui) {
    manage = el("button", { type: "button", "class": "manage", "aria-expanded": "false",
                            "aria-controls": "stcloud-panel", "data-stcloud": "manage" },
                "Manage app");
    panel = el("aside", { id: "stcloud-panel", "class": "panel", "aria-label": "Manage app" });
    panel.hidden = true;
    var bar = el("div", { "class": "bar" });
    bar.appendChild(el("h2", {}, "Manage app"));
    var close = el("button", { type: "button", "class": "close",
                               "aria-label": "Close the Manage app panel" }, "\u2715");
    close.addEventListener("click", closePanel);
    bar.appendChild(close);
    panel.appendChild(bar);
    manage.addEventListener("click", openPanel);
    panel.addEventListener("keydown", function (e) { if (e.key === "Escape") closePanel(); });
    ui.appendChild(panel);
    ui.appendChild(manage);
  }

  // After a reboot the app leaves "running" within a moment: then reload, which shows the
  // oven page, which reloads onto the app when it is back.
  function reloadWhenRestarting() {
    var started = Date.now();
    (function check() {
      fetch(BASE + "status", { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { return r.json(); })
        .then(function (d) {
          if (!d.serving || Date.now() - started > 30000) location.reload();
          else setTimeout(check, 250);
        }).catch(function () { setTimeout(check, 500); });
    })();
  }

  function signOut() {
    var form = el("form", { method: "POST", action: BASE + "logout" });
    var token = el("input", { type: "hidden", name: "csrf" });
    token.value = me.csrf;
    form.appendChild(token);
    document.body.appendChild(form);
    form.submit();
  }

  window.addEventListener("message", function (e) {
    if (!frame || e.origin !== location.origin || e.source !== frame.contentWindow) return;
    var msg = e.data || {};
    if (msg.stcloud !== 1) return;
    if (msg.action === "restarting") reloadWhenRestarting();
    else if (msg.action === "deleted") location.reload();
    else if (msg.action === "signout") signOut();
  });

  function render(data) {
    me = data;
    if (!me.can_manage && !me.can_favorite) return;
    var host = el("stcloud-overlay", {});
    host.style.display = "none";
    root = host.attachShadow({ mode: "open" });
    var css = el("link", { rel: "stylesheet", href: me.css_url });
    css.addEventListener("load", function () { host.style.display = ""; });
    root.appendChild(css);
    var ui = el("div", { "class": "ui" });
    if (me.can_favorite) renderStar(ui);
    if (me.can_manage) renderManage(ui);
    note = el("div", { "class": "note", role: "status", "aria-live": "polite" });
    note.hidden = true;
    ui.appendChild(note);
    root.appendChild(ui);
    document.body.appendChild(host);
  }

  fetch(BASE + "me", { credentials: "same-origin", cache: "no-store" })
    .then(function (r) { return r.ok ? r.json() : null; })
    .then(function (d) { if (d) render(d); })
    .catch(function () {});
})();
