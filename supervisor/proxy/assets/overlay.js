/* Streamlit Cloud overlay: the "Manage app" button, its side panel and the favorite star,
   and the watch that shows our page for the app's state when it stops serving.
   The proxy injects this into the HTML pages of hosted apps (never with ?embed=true). It
   talks only to /__stcloud/ on this host, renders in a shadow root (no reliance on
   Streamlit's class names, no styles leaking either way) and does nothing inside frames. */
(function () {
  "use strict";
  if (window.top !== window.self || window.__stcloudOverlay) return;
  if (/^true$/i.test(new URLSearchParams(location.search).get("embed") || "")) return;
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

  function renderManage(ui, dock) {
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
    dock.appendChild(manage);
    ui.appendChild(panel);
  }

  // The watch: a long-poll of /__stcloud/state (the proxy holds it until the app's state
  // or instance changes). Any state but running means our page for it (oven, sleeping,
  // over its memory limit, crashed, gone), which a reload of this URL shows; running on a
  // new instance (a redeploy with new dependencies) means new code, which a reload loads.
  // "deleting" passes on its own: wait for the app to be gone, then show that.
  var token = null, backoff = 1000, deletingSince = 0;

  function leave() { location.reload(); }

  function watchState() {
    var url = BASE + "state" + (token === null ? "" : "?since=" + encodeURIComponent(token));
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 403) return null;  // not ours to watch (access was revoked)
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (d) {
        if (!d) return;
        backoff = 1000;
        var first = token === null;
        if (d.state === "deleting") {
          deletingSince = deletingSince || Date.now();
          if (Date.now() - deletingSince > 60000) return leave();
        } else if ((first && d.state !== "running") || (!first && d.token !== token)) {
          return leave();
        }
        token = d.token;
        setTimeout(watchState, d.retry ? d.retry * 1000 : (d.state === "deleting" ? 500 : 0));
      })
      .catch(function () {
        setTimeout(watchState, backoff);
        backoff = Math.min(backoff * 2, 30000);
      });
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
    // "restarting" and "deleted" need nothing here: the watch sees the app's new state.
    if (msg.action === "signout") signOut();
  });

  function render(data) {
    me = data;
    if (!me.can_manage && !me.can_favorite) return false;
    var host = el("stcloud-overlay", {});
    host.style.display = "none";
    root = host.attachShadow({ mode: "open" });
    var css = el("link", { rel: "stylesheet", href: me.css_url });
    css.addEventListener("load", function () { host.style.display = ""; });
    root.appendChild(css);
    var ui = el("div", { "class": "ui" });
    // Bottom right, away from Streamlit's header (its running and connection indicator).
    var dock = el("div", { "class": "dock" });
    ui.appendChild(dock);
    if (me.can_favorite) renderStar(dock);
    if (me.can_manage) renderManage(ui, dock);
    note = el("div", { "class": "note", role: "status", "aria-live": "polite" });
    note.hidden = true;
    ui.appendChild(note);
    root.appendChild(ui);
    document.body.appendChild(host);
    return true;
  }

  watchState();
  // <html data-stcloud-overlay="shown|none"> once decided (the watch's long-poll keeps a
  // request open, so "the network is idle" never says it).
  function decided(shown) {
    document.documentElement.setAttribute("data-stcloud-overlay", shown ? "shown" : "none");
  }
  fetch(BASE + "me", { credentials: "same-origin", cache: "no-store" })
    .then(function (r) { return r.ok ? r.json() : null; })
    .then(function (d) { decided(!!d && render(d)); })
    .catch(function () { decided(false); });
})();
