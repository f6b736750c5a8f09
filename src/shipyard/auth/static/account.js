// The pages the account mails link to: {APP_URL}/_/#/auth/<action>/<token>. The token sits
// in the URL fragment, which never reaches the server; this script reads it and calls the
// records API of the token's collection. Everything is built with textContent (the token's
// claims come from the URL), and nothing is loaded from another origin.
(function () {
  "use strict";

  var ACTIONS = ["confirm-verification", "confirm-password-reset", "confirm-email-change"];
  var main = document.getElementById("app");
  var status = document.getElementById("status");

  function say(text, kind) {
    status.textContent = text;
    status.className = kind || "";
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    if (text) node.textContent = text;
    return node;
  }

  function claimsOf(token) {
    var parts = token.split(".");
    if (parts.length !== 3) return null;
    try {
      var b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
      while (b64.length % 4) b64 += "=";
      var bytes = Uint8Array.from(atob(b64), function (c) { return c.charCodeAt(0); });
      var claims = JSON.parse(new TextDecoder().decode(bytes));
      return claims && typeof claims.collectionId === "string" && claims.collectionId ? claims : null;
    } catch (e) {
      return null;
    }
  }

  function parseLink() {
    var m = /^#\/auth\/([a-z-]+)\/([^/?#]+)$/.exec(window.location.hash);
    if (!m || ACTIONS.indexOf(m[1]) < 0) return null;
    var token;
    try { token = decodeURIComponent(m[2]); } catch (e) { return null; }
    var claims = claimsOf(token);
    return claims ? { action: m[1], token: token, claims: claims } : null;
  }

  function post(link, body) {
    var url = new URL("../api/collections/" + encodeURIComponent(link.claims.collectionId) +
      "/" + link.action, window.location.href);
    return window.fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer"
    }).then(function (r) {
      if (r.status === 204) return { ok: true };
      return r.json().then(
        function (data) { return { ok: false, status: r.status, error: data || {} }; },
        function () { return { ok: false, status: r.status, error: {} }; }
      );
    }, function () {
      return { ok: false, status: 0, error: { message: "The server cannot be reached. Try again." } };
    });
  }

  function done() {
    // the link works once: take the token out of the address bar and the history
    window.history.replaceState(null, "", window.location.pathname + window.location.search);
  }

  function explain(result) {
    var data = result.error.data || {};
    if (data.token) return "This link is invalid or has expired. Ask for a new one.";
    if (result.status === 404) return "This link is invalid: its account collection does not exist.";
    return result.error.message || "Something went wrong (" + result.status + ").";
  }

  function form(link, title, fields, submitLabel, body, success) {
    var f = el("form", { novalidate: "" });
    f.appendChild(el("h2", {}, title));
    if (link.claims.email) {  // lets password managers file the new password correctly
      f.appendChild(el("input", { type: "email", name: "username", autocomplete: "username",
        value: String(link.claims.email), readonly: "", hidden: "" }));
    }
    var errors = {};
    fields.forEach(function (spec) {
      var id = "f-" + spec.name;
      f.appendChild(el("label", { for: id }, spec.label));
      f.appendChild(el("input", { id: id, name: spec.name, type: "password", required: "",
        autocomplete: spec.autocomplete }));
      errors[spec.name] = el("p", { class: "field-error", id: id + "-error", hidden: "" });
      f.appendChild(errors[spec.name]);
    });
    var button = el("button", { type: "submit" }, submitLabel);
    f.appendChild(button);
    f.addEventListener("submit", function (event) {
      event.preventDefault();
      Object.keys(errors).forEach(function (k) { errors[k].hidden = true; });
      button.disabled = true;
      say("Sending…");
      var values = {};
      fields.forEach(function (spec) { values[spec.name] = f.elements[spec.name].value; });
      post(link, body(values)).then(function (result) {
        button.disabled = false;
        if (result.ok) {
          f.remove();
          done();
          say(success, "success");
          return;
        }
        var data = result.error.data || {};
        var shown = false;
        Object.keys(errors).forEach(function (k) {
          if (data[k] && data[k].message) {
            errors[k].textContent = data[k].message;
            errors[k].hidden = false;
            shown = true;
          }
        });
        say(shown && !data.token ? "Please correct the fields below." : explain(result), "error");
      });
    });
    main.appendChild(f);
  }

  function start() {
    var link = parseLink();
    if (!link) {
      say("This page confirms the links of account e-mails, and this address holds no " +
        "valid link. Open the link from the e-mail again.", "error");
      return;
    }
    if (link.action === "confirm-verification") {
      say("Verifying your e-mail address…");
      post(link, { token: link.token }).then(function (result) {
        if (result.ok) {
          done();
          say("Your e-mail address is verified. You can close this page.", "success");
        } else {
          say(explain(result), "error");
        }
      });
    } else if (link.action === "confirm-password-reset") {
      say("");
      form(link, "Set a new password", [
        { name: "password", label: "New password", autocomplete: "new-password" },
        { name: "passwordConfirm", label: "Repeat the new password", autocomplete: "new-password" }
      ], "Set password", function (v) {
        return { token: link.token, password: v.password, passwordConfirm: v.passwordConfirm };
      }, "Your password has been changed. You can now log in with the new one.");
    } else {
      var address = typeof link.claims.newEmail === "string" ? link.claims.newEmail : "";
      say("");
      form(link, address ? "Change your e-mail address to " + address : "Confirm your new e-mail address", [
        { name: "password", label: "Your current password", autocomplete: "current-password" }
      ], "Confirm new address", function (v) {
        return { token: link.token, password: v.password };
      }, address ? "Your e-mail address is now " + address + "." : "Your e-mail address has been changed.");
    }
  }

  window.addEventListener("hashchange", function () { window.location.reload(); });
  start();
})();
