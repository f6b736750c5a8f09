// Swagger UI for /api/docs. The document at openapi.json depends on who asks: guests see
// what guests may call, a user what that user may call, a superuser everything. The page
// first shows the guest view; a token entered with "Authorize" is sent along when the
// document is fetched again, and "Logout" goes back to the guest view. The token lives in
// this page only (not in localStorage).
(function () {
  "use strict";
  var SPEC = "openapi.json";
  var ui = null;

  function token() {
    if (!ui) return "";
    var entry = ui.authSelectors.authorized().get("Authorization");
    var value = entry && entry.get("value");
    return typeof value === "string" ? value : "";
  }

  function reload() {
    // after the auth state has changed, so the request below carries the new token
    window.setTimeout(function () { ui.specActions.download(SPEC); }, 0);
  }

  function refetchOnAuthChange() {
    function wrap(action) {
      return function (payload) {
        var out = action(payload);
        reload();
        return out;
      };
    }
    return {
      statePlugins: {
        auth: { wrapActions: { authorize: wrap, logout: wrap } }
      }
    };
  }

  ui = window.SwaggerUIBundle({
    url: SPEC,
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: false,
    validatorUrl: null,
    requestInterceptor: function (req) {
      var t = req.loadSpec ? token() : "";
      if (t) req.headers.Authorization = t;
      return req;
    },
    presets: [window.SwaggerUIBundle.presets.apis, window.SwaggerUIStandalonePreset],
    plugins: [refetchOnAuthChange],
    layout: "StandaloneLayout"
  });
  window.ui = ui;
})();
