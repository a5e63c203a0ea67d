/* On the dashboard host, after a visitor of an app was sent here to sign in: once the
   sign-in cookie exists, continue to the app (the proxy answers /__stcloud/return). */
(function () {
  "use strict";
  if (window.top !== window.self || window.__stcloudReturn) return;
  window.__stcloudReturn = true;
  var tries = 0;
  (function poll() {
    fetch("/__stcloud/return", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(function (d) {
        if (d.url) location.replace(d.url);
        else if (d.wait && tries++ < 1800) setTimeout(poll, 1000);
      }).catch(function () { if (tries++ < 1800) setTimeout(poll, 2000); });
  })();
})();
