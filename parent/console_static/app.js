/* WeRSS Cascade admin console: a single page over the parent's own JSON API.
 *
 * The admin's Bearer token lives in a variable of this closure only: never in
 * localStorage, sessionStorage or a cookie. Reloading the page logs out. Every element is
 * built with the DOM API (no innerHTML), so API data can never become markup.
 */
(function () {
  "use strict";

  const I18N = window.WERSS_I18N;
  const API = "/api/v1";
  const CASCADE = API + "/cascade";
  const POLL_MS = 3000;

  let lang = readPreference("werss.lang", ["zh", "en"], "zh");
  let theme = readPreference("werss.theme", ["auto", "light", "dark"], "auto");
  let token = null;
  let me = null;
  let features = {};
  let flash = null;
  let cleanups = [];
  let generation = 0;
  let expiryTimer = null;

  // --- small helpers ---------------------------------------------------------------------

  function readPreference(key, allowed, fallback) {
    try {
      const value = window.localStorage.getItem(key);
      return allowed.includes(value) ? value : fallback;
    } catch (e) {
      return fallback;
    }
  }

  function savePreference(key, value) {
    try { window.localStorage.setItem(key, value); } catch (e) { /* private mode */ }
  }

  function t(key, vars) {
    let text = (I18N[lang] && I18N[lang][key]) || I18N.zh[key] || key;
    if (vars) {
      for (const name of Object.keys(vars)) {
        text = text.split("{" + name + "}").join(String(vars[name]));
      }
    }
    return text;
  }

  function h(tag, attrs) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
      else if (name === "class") el.className = value;
      else if (name === "text") el.textContent = value;
      else if (name === "value") el.value = value;
      else if (name === "checked") el.checked = Boolean(value);
      else el.setAttribute(name, value === true ? "" : String(value));
    }
    append(el, Array.prototype.slice.call(arguments, 2));
    return el;
  }

  function append(el, kids) {
    for (const kid of [kids].flat(Infinity)) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : String(kid));
    }
    return el;
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
    return el;
  }

  function debounce(fn, ms) {
    let timer = null;
    return function () {
      const args = arguments;
      clearTimeout(timer);
      timer = setTimeout(function () { fn.apply(null, args); }, ms);
    };
  }

  function onCleanup(fn) { cleanups.push(fn); }

  function every(ms, fn) {
    const id = setInterval(fn, ms);
    onCleanup(function () { clearInterval(id); });
  }

  function pad(n) { return String(n).padStart(2, "0"); }

  function fmtTime(value) {
    if (value === null || value === undefined || value === "") return t("never");
    const d = typeof value === "number" ? new Date(value * 1000) : new Date(value);
    if (isNaN(d.getTime())) return String(value);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function ago(value) {
    if (!value) return t("never");
    const seconds = Math.round((Date.now() - new Date(value).getTime()) / 1000);
    if (seconds < 0) return t("inFuture", { n: -seconds });
    if (seconds < 60) return t("secondsAgo", { n: seconds });
    if (seconds < 3600) return t("minutesAgo", { n: Math.floor(seconds / 60) });
    if (seconds < 86400) return t("hoursAgo", { n: Math.floor(seconds / 3600) });
    return t("daysAgo", { n: Math.floor(seconds / 86400) });
  }

  function timeEl(value, relative) {
    if (!value) return h("span", { class: "muted" }, t("never"));
    return h("time", { datetime: value, title: fmtTime(value) }, relative ? ago(value) : fmtTime(value));
  }

  function splitLabels(text) {
    return text.split(/[,，\s]+/).map(function (s) { return s.trim(); }).filter(Boolean);
  }

  function badge(status) {
    const key = "status." + status;
    const known = I18N.zh[key] !== undefined;
    return h("span", { class: "badge badge-" + String(status).replace(/[^a-z_]/g, "") },
      known ? t(key) : String(status));
  }

  function chips(labels) {
    if (!labels || !labels.length) return h("span", { class: "muted" }, "—");
    return h("span", { class: "chips" }, labels.map(function (l) { return h("span", { class: "chip" }, l); }));
  }

  function short(id) { return id ? String(id).slice(0, 8) : "—"; }

  // Links from collected data open only over http(s): never javascript: or data: URLs.
  function httpUrl(value) { return typeof value === "string" && /^https?:\/\//i.test(value); }

  // --- talking to the API ----------------------------------------------------------------

  class ApiFailure extends Error {
    constructor(status, body, retryAfter) {
      super((body && body.message) || ("HTTP " + status));
      this.status = status;
      this.error = body && body.error;
      this.details = body && body.details;
      this.retryAfter = retryAfter;
    }
  }

  function isUnavailable(err) {
    return err instanceof ApiFailure && (err.status === 404 && err.error === "not_found" || err.status === 405);
  }

  async function api(method, path, body, options) {
    options = options || {};
    const headers = { "Accept": "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    let payload;
    if (body instanceof FormData) {
      payload = body;
    } else if (options.contentType) {
      payload = body;
      headers["Content-Type"] = options.contentType;
    } else if (body !== undefined) {
      payload = JSON.stringify(body);
      headers["Content-Type"] = "application/json";
    }
    const sentWith = token;
    let response;
    try {
      response = await fetch(path, {
        method: method, headers: headers, body: payload, cache: "no-store",
        credentials: "omit", redirect: "error",
      });
    } catch (e) {
      throw new ApiFailure(0, { error: "network", message: t("err.network") });
    }
    if (options.blob && response.ok) return response.blob();
    let data = {};
    if (response.status !== 204) {
      try { data = await response.json(); } catch (e) { data = {}; }
    }
    if (!response.ok) {
      const failure = new ApiFailure(response.status, data, response.headers.get("Retry-After"));
      if (response.status === 401 && sentWith && sentWith === token) {
        sessionEnded(t("login.expired"));
      }
      throw failure;
    }
    return data;
  }

  function describe(err) {
    if (!(err instanceof ApiFailure)) return t("err.generic", { m: String(err && err.message || err) });
    // The parent explains in English; name the stable error code in the page's language too.
    const known = err.error && I18N[lang]["errcode." + err.error];
    const parts = [known && lang !== "en" ? known + "（" + err.message + "）" : err.message];
    if (err.details && typeof err.details === "object") {
      for (const [field, problems] of Object.entries(err.details)) {
        const text = Array.isArray(problems) ? problems.join(" ")
          : (typeof problems === "object" ? JSON.stringify(problems) : String(problems));
        parts.push(t("err.field", { f: field, m: text }));
      }
    }
    return parts.join(" ");
  }

  function notice(kind, text) {
    return h("p", { class: "notice notice-" + kind, role: kind === "error" ? "alert" : "status" }, text);
  }

  function unavailableNotice(route) {
    return notice("info", t("unavailable", { r: route }));
  }

  function showIn(box, kind, text) {
    clear(box).append(notice(kind, text));
  }

  // --- the frame: login page, header, navigation -----------------------------------------

  function applyTheme() {
    document.documentElement.setAttribute("data-theme", theme);
    document.documentElement.setAttribute("lang", lang === "zh" ? "zh-CN" : "en");
    document.title = t("app.title");
    const skip = document.getElementById("skip-link");
    if (skip) skip.textContent = t("app.skip");
  }

  function toolbar() {
    return h("div", { class: "toolbar" },
      h("button", {
        type: "button", class: "ghost", id: "lang-toggle", lang: lang === "zh" ? "en" : "zh",
        "aria-label": t("lang.switchLabel"),
        onclick: function () { lang = lang === "zh" ? "en" : "zh"; savePreference("werss.lang", lang); render(); },
      }, t("lang.switch")),
      h("button", {
        type: "button", class: "ghost", id: "theme-toggle",
        onclick: function () {
          theme = { auto: "light", light: "dark", dark: "auto" }[theme];
          savePreference("werss.theme", theme);
          applyTheme();
          this.textContent = t("theme." + theme);
        },
      }, t("theme." + theme)));
  }

  function renderLogin() {
    const root = clear(document.getElementById("app"));
    const message = h("div", { id: "login-message" });
    if (flash) message.append(notice(flash.kind, flash.text));
    flash = null;
    const username = h("input", { id: "login-username", name: "username", autocomplete: "username", required: true, value: "admin" });
    const password = h("input", { id: "login-password", name: "password", type: "password", autocomplete: "current-password", required: true });
    const submit = h("button", { type: "submit", class: "primary", id: "login-submit" }, t("login.submit"));
    const form = h("form", {
      class: "login-card", "aria-labelledby": "login-title", novalidate: true,
      onsubmit: async function (event) {
        event.preventDefault();
        submit.disabled = true;
        submit.textContent = t("login.busy");
        clear(message);
        try {
          const body = await api("POST", API + "/auth/login", { username: username.value, password: password.value });
          token = body.data.access_token;
          password.value = "";
          // An idle page leaves too when the token runs out, not only at the next click.
          const lifetime = Number(body.data.expires_in) * 1000;
          if (lifetime > 0 && lifetime < 2147483647) {
            expiryTimer = setTimeout(function () { sessionEnded(t("login.expired")); }, lifetime);
          }
          await startSession();
        } catch (err) {
          if (err.status === 429) {
            message.append(notice("error", t("login.throttled", { s: err.retryAfter || (err.details && err.details.retry_after) || "?" })));
          } else if (err.status === 401) {
            message.append(notice("error", t("login.wrong")));
          } else {
            message.append(notice("error", describe(err)));
          }
          submit.disabled = false;
          submit.textContent = t("login.submit");
          password.focus();
        }
      },
    },
      h("h1", { id: "login-title" }, t("login.title")),
      message,
      h("label", { for: "login-username" }, t("login.username")), username,
      h("label", { for: "login-password" }, t("login.password")), password,
      submit,
      h("p", { class: "muted small" }, t("login.memoryNote")));
    root.append(h("header", { class: "topbar" }, h("span", { class: "brand" }, "WeRSS Cascade"), toolbar()),
      h("main", { id: "main", class: "login-main", tabindex: "-1" }, form));
    (username.value ? password : username).focus();
  }

  async function startSession() {
    const [who, caps] = await Promise.all([
      api("GET", API + "/auth/me"),
      api("GET", API + "/console/features"),
    ]);
    me = who.data;
    features = caps.data || {};
    try {
      CHANNELS = (await api("GET", API + "/console/channels")).data.channels;
    } catch (err) { /* an older parent: keep the built-in list */ }
    if (!location.hash || location.hash === "#" || location.hash === "#/") {
      history.replaceState(null, "", "#/overview");
    }
    render();
  }

  function sessionEnded(text, kind) {
    clearTimeout(expiryTimer);
    expiryTimer = null;
    token = null;
    me = null;
    flash = { kind: kind || "error", text: text };
    runCleanups();
    renderLogin();
  }

  async function logout() {
    try {
      await api("POST", API + "/auth/logout");
    } finally {
      sessionEnded(t("login.loggedOut"), "info");
    }
  }

  const PAGES = [
    ["overview", pageOverview],
    ["nodes", pageNodes],
    ["feeds", pageFeeds],
    ["tasks", pageTasks],
    ["runs", pageRuns],
    ["deliveries", pageDeliveries],
    ["logs", pageLogs],
    ["articles", pageArticles],
    ["account", pageAccount],
  ];

  function currentRoute() {
    const hash = location.hash.replace(/^#\/?/, "");
    const cut = hash.indexOf("?");
    const name = cut < 0 ? hash : hash.slice(0, cut);
    const params = new URLSearchParams(cut < 0 ? "" : hash.slice(cut + 1));
    const known = PAGES.find(function (p) { return p[0] === name; });
    return { name: known ? name : "overview", page: known ? known[1] : pageOverview, params: params };
  }

  function runCleanups() {
    generation += 1;
    const pending = cleanups;
    cleanups = [];
    pending.forEach(function (fn) { try { fn(); } catch (e) { /* already gone */ } });
  }

  function shell(active) {
    const root = clear(document.getElementById("app"));
    const nav = h("nav", { "aria-label": t("nav.label"), class: "nav" },
      h("ul", null, PAGES.map(function (p) {
        const current = p[0] === active;
        return h("li", null, h("a", { href: "#/" + p[0], "aria-current": current ? "page" : null, id: "nav-" + p[0] }, t("nav." + p[0])));
      })));
    const main = h("main", { id: "main", tabindex: "-1" });
    root.append(
      h("header", { class: "topbar" },
        h("a", { class: "brand", href: "#/overview" }, "WeRSS Cascade"),
        toolbar(),
        h("span", { class: "who muted" }, me ? me.username : ""),
        h("button", { type: "button", class: "ghost", id: "logout", onclick: logout }, t("logout"))),
      nav, main);
    // On a phone the navigation scrolls sideways: keep the current page's tab in sight.
    const current = nav.querySelector('[aria-current="page"]');
    if (current && current.scrollIntoView) current.scrollIntoView({ block: "nearest", inline: "nearest" });
    return main;
  }

  async function render() {
    applyTheme();
    runCleanups();
    if (!token) { renderLogin(); return; }
    const route = currentRoute();
    const main = shell(route.name);
    const mine = generation;
    const title = h("h1", { tabindex: "-1" }, t("nav." + route.name));
    main.append(title);
    const body = h("div", { class: "page page-" + route.name });
    main.append(body);
    try {
      await route.page(body, route.params, function () { return mine === generation; });
    } catch (err) {
      if (err instanceof ApiFailure && err.status === 401) return;
      if (mine === generation) body.append(notice("error", describe(err)));
    }
    if (mine === generation && document.activeElement === document.body) title.focus({ preventScroll: true });
  }

  // --- shared building blocks ------------------------------------------------------------

  function field(labelText, input, hint) {
    if (!input.id) input.id = "f-" + Math.random().toString(36).slice(2, 10);
    return h("div", { class: "field" },
      h("label", { for: input.id }, labelText), input,
      hint ? h("small", { class: "muted" }, hint) : null);
  }

  function section(titleText, kids, attrs) {
    return h("section", Object.assign({ class: "card" }, attrs || {}), h("h2", null, titleText), kids);
  }

  function dataTable(columns, rows, options) {
    options = options || {};
    if (!rows.length) return h("p", { class: "muted empty" }, t("empty"));
    return h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": options.label || "" },
      h("table", { class: options.className || "" },
        h("thead", null, h("tr", null, columns.map(function (c) { return h("th", { scope: "col" }, c[0]); }))),
        h("tbody", null, rows.map(function (row) {
          return h("tr", options.rowAttrs ? options.rowAttrs(row) : null,
            columns.map(function (c) { return h("td", { "data-label": c[0] }, c[1](row)); }));
        }))));
  }

  function pager(total, page, pageSize, go) {
    const pages = Math.max(1, Math.ceil(total / pageSize));
    return h("div", { class: "pager" },
      h("button", { type: "button", disabled: page <= 1, onclick: function () { go(page - 1); } }, t("prev")),
      h("span", { class: "muted" }, t("pageOf", { p: page + "/" + pages, n: total })),
      h("button", { type: "button", disabled: page >= pages, onclick: function () { go(page + 1); } }, t("next")));
  }

  function copyButton(getText, label) {
    return h("button", {
      type: "button", class: "small-button", "aria-label": (label ? label + " " : "") + t("copy"),
      onclick: async function () {
        const text = getText();
        try {
          await navigator.clipboard.writeText(text);
        } catch (e) {
          const area = h("textarea", { class: "offscreen", readonly: true }, text);
          document.body.append(area);
          area.select();
          document.execCommand("copy");
          area.remove();
        }
        const button = this;
        button.textContent = t("copied");
        setTimeout(function () { button.textContent = t("copy"); }, 1500);
      },
    }, t("copy"));
  }

  function modal(titleText, build) {
    const dialog = h("dialog", { class: "modal", "aria-labelledby": "modal-title" });
    const close = function () { if (dialog.open) dialog.close(); };
    dialog.addEventListener("close", function () { dialog.remove(); });
    const body = h("div", { class: "modal-body" });
    dialog.append(
      h("div", { class: "modal-head" },
        h("h2", { id: "modal-title" }, titleText),
        h("button", { type: "button", class: "ghost", "aria-label": t("close"), onclick: close }, "×")),
      body);
    document.body.append(dialog);
    build(body, close, dialog);
    dialog.showModal();
    onCleanup(close);
    return dialog;
  }

  function confirmAction(text) {
    return new Promise(function (resolve) {
      let answer = false;
      const dialog = modal(t("confirm"), function (body, close) {
        body.append(h("p", { id: "confirm-text" }, text),
          h("div", { class: "actions" },
            h("button", { type: "button", id: "confirm-no", onclick: close }, t("cancel")),
            h("button", { type: "button", class: "danger", id: "confirm-yes", onclick: function () { answer = true; close(); } }, t("confirm"))));
      });
      dialog.addEventListener("close", function () { resolve(answer); });
      dialog.querySelector("#confirm-no").focus();
    });
  }

  function busy(button, work) {
    return async function (event) {
      if (event) event.preventDefault();
      button.disabled = true;
      try { await work(); } finally { button.disabled = false; }
    };
  }

  async function allNodes() {
    const body = await api("GET", CASCADE + "/nodes?page_size=200");
    return body.data.items;
  }

  async function allFeeds() {
    const body = await api("GET", API + "/feeds?page_size=200");
    return body.data.items;
  }

  async function allTasks() {
    const body = await api("GET", API + "/message-tasks?page_size=200");
    return body.data.items;
  }

  function byId(items) {
    const map = {};
    items.forEach(function (item) { map[item.id] = item; });
    return map;
  }

  function wechatOf(node) {
    const caps = node.capabilities || {};
    return caps.wechat && typeof caps.wechat === "object" ? caps.wechat : null;
  }

  function wechatText(node) {
    const wechat = wechatOf(node);
    if (!wechat || wechat.session_valid === undefined) return t("nodes.wechatUnknown");
    if (wechat.session_valid) {
      const account = wechat.account && wechat.account.name ? wechat.account.name + " · " : "";
      return account + (wechat.expires_at ? t("nodes.wechatValidUntil", { t: fmtTime(wechat.expires_at) }) : t("wechat.valid"));
    }
    return t("nodes.wechatExpired");
  }

  // --- overview --------------------------------------------------------------------------

  async function pageOverview(root, params, alive) {
    const [nodes, stats, daily, errors] = await Promise.all([
      allNodes(),
      api("GET", CASCADE + "/stats"),
      api("GET", API + "/articles/daily?days=14"),
      api("GET", CASCADE + "/sync-logs?status=failed&limit=5"),
    ]);
    let failedDeliveries = null;
    if (features.deliveries) {
      try {
        const body = await api("GET", API + "/deliveries?status=failed&page_size=1");
        failedDeliveries = body.data.total !== undefined ? body.data.total : (body.data.items || body.data).length;
      } catch (err) {
        if (!isUnavailable(err)) throw err;
      }
    }
    if (!alive()) return;
    const count = { online: 0, offline: 0, disabled: 0 };
    let valid = 0;
    let expired = 0;
    nodes.forEach(function (n) {
      count[n.status] = (count[n.status] || 0) + 1;
      const wechat = wechatOf(n);
      if (wechat && wechat.session_valid === true) valid += 1;
      else if (wechat && wechat.session_valid === false) expired += 1;
    });
    const s = stats.data;
    const card = function (href, id, titleText, lines) {
      return h("a", { class: "stat", href: href, id: id },
        h("span", { class: "stat-title" }, titleText),
        lines.map(function (line) {
          return h("span", { class: "stat-line" }, h("strong", null, String(line[0])), " ", line[1]);
        }));
    };
    root.append(h("div", { class: "stats" },
      card("#/nodes", "ov-nodes", t("ov.nodes"), [[count.online, t("ov.online")], [count.offline, t("ov.offline")], [count.disabled, t("ov.disabled")]]),
      card("#/nodes", "ov-wechat", t("ov.wechat"), [[valid, t("ov.valid")], [expired, t("ov.expired")]]),
      card("#/runs", "ov-runs", t("ov.runs"), [[s.pending, t("ov.pending")], [s.leased, t("ov.leased")]]),
      card("#/runs", "ov-today", t("ov.today"), [[s.completed_today, t("ov.completedToday")], [s.failed_today, t("ov.failedToday")]]),
      features.deliveries
        ? card("#/deliveries?status=failed", "ov-deliveries", t("ov.deliveries"), [[failedDeliveries === null ? "—" : failedDeliveries, t("ov.deliveriesFailed")]])
        : card("#/deliveries", "ov-deliveries", t("ov.deliveries"), [["—", t("ov.notAvailable")]])));
    root.append(section(t("ov.chart"), barChart(daily.data.days), { id: "ov-chart" }));
    root.append(section(t("ov.errors"), [
      errors.data.items.length
        ? logTable(errors.data.items, byId(nodes))
        : h("p", { class: "muted" }, t("ov.noErrors")),
      h("p", null, h("a", { href: "#/logs?status=failed" }, t("ov.allLogs"))),
    ], { id: "ov-errors" }));
  }

  function barChart(days) {
    const NS = "http://www.w3.org/2000/svg";
    const svg = function (tag, attrs) {
      const el = document.createElementNS(NS, tag);
      for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
      return el;
    };
    const width = 700;
    const height = 180;
    const bottom = 24;
    const max = Math.max(1, ...days.map(function (d) { return d.count; }));
    const step = width / days.length;
    const total = days.reduce(function (sum, d) { return sum + d.count; }, 0);
    const chart = svg("svg", { viewBox: "0 0 " + width + " " + height, class: "chart", role: "img", "aria-label": t("ov.chart") + "：" + t("ov.chartTotal", { n: total }) });
    days.forEach(function (d, i) {
      const barHeight = Math.round((height - bottom - 18) * d.count / max);
      const x = i * step + step * 0.15;
      const rect = svg("rect", { x: x, y: height - bottom - barHeight, width: step * 0.7, height: Math.max(barHeight, 1), rx: 3, class: d.count ? "bar" : "bar bar-empty" });
      const tip = svg("title", {});
      tip.textContent = d.date + ": " + d.count;
      rect.append(tip);
      chart.append(rect);
      if (d.count) {
        const label = svg("text", { x: x + step * 0.35, y: height - bottom - barHeight - 4, "text-anchor": "middle", class: "bar-value" });
        label.textContent = String(d.count);
        chart.append(label);
      }
      const day = svg("text", { x: x + step * 0.35, y: height - 6, "text-anchor": "middle", class: "bar-label" });
      day.textContent = d.date.slice(5);
      chart.append(day);
    });
    return [chart, h("p", { class: "muted small" }, t("ov.chartTotal", { n: total }))];
  }

  // --- nodes -----------------------------------------------------------------------------

  function configBlocks(creds) {
    const parentUrl = location.origin;
    const yaml = [
      "# config.yaml",
      "cascade:",
      "  enabled: True",
      "  node_type: child",
      "  parent_api_url: \"" + parentUrl + "\"  # 父节点API地址",
      "  api_key: \"" + creds.api_key + "\"  # 从父节点获取的API Key",
      "  api_secret: \"" + creds.api_secret + "\"  # 从父节点获取的Secret",
      "  sync_interval: 300  # 同步间隔（秒）",
      "  heartbeat_interval: 60  # 心跳间隔（秒）",
    ].join("\n");
    const env = [
      "CASCADE_ENABLED=True",
      "CASCADE_NODE_TYPE=child",
      "CASCADE_PARENT_URL=" + parentUrl,
      "CASCADE_API_KEY=" + creds.api_key,
      "CASCADE_API_SECRET=" + creds.api_secret,
      "CASCADE_SYNC_INTERVAL=300",
      "CASCADE_HEARTBEAT_INTERVAL=60",
    ].join("\n");
    return { yaml: yaml, env: env };
  }

  function showCredentials(creds, onClose) {
    const blocks = configBlocks(creds);
    const dialog = modal(t("nodes.credTitle"), function (body, close) {
      const row = function (labelText, id, value) {
        return h("div", { class: "secret-row" },
          h("span", { class: "secret-label" }, labelText),
          h("code", { id: id }, value),
          copyButton(function () { return value; }, labelText));
      };
      body.append(
        notice("warn", t("nodes.credWarn")),
        row("API Key", "cred-api-key", creds.api_key),
        row("API Secret", "cred-api-secret", creds.api_secret),
        h("div", { class: "block-head" }, h("h3", null, t("nodes.credYaml")), copyButton(function () { return blocks.yaml; }, "config.yaml")),
        h("pre", { id: "cred-yaml" }, blocks.yaml),
        h("div", { class: "block-head" }, h("h3", null, t("nodes.credEnv")), copyButton(function () { return blocks.env; }, "env")),
        h("pre", { id: "cred-env" }, blocks.env),
        h("div", { class: "actions" }, h("button", { type: "button", class: "primary", id: "cred-close", onclick: close }, t("nodes.credDone"))));
    });
    dialog.addEventListener("close", function () { if (onClose) onClose(); });
  }

  async function pageNodes(root, params, alive) {
    const message = h("div", { id: "nodes-message" });
    const listBox = h("div", { id: "nodes-list" });
    const name = h("input", { id: "node-name", required: true, maxlength: 100 });
    const description = h("input", { id: "node-description", maxlength: 2000 });
    const apiUrl = h("input", { id: "node-api-url", type: "url", placeholder: "http://child-server:8001" });
    const labels = h("input", { id: "node-labels", placeholder: "cn-east, wechat" });
    const capacity = h("input", { id: "node-capacity", type: "number", min: 1, max: 1000, value: "4" });
    const submit = h("button", { type: "submit", class: "primary", id: "node-create" }, t("nodes.createSubmit"));

    async function refresh() {
      const nodes = await allNodes();
      if (!alive()) return;
      clear(listBox).append(dataTable([
        [t("nodes.name"), function (n) { return h("span", null, h("strong", null, n.name), n.description ? h("small", { class: "muted block" }, n.description) : null); }],
        [t("nodes.status"), function (n) { return badge(n.status); }],
        [t("nodes.heartbeat"), function (n) { return timeEl(n.last_heartbeat_at, true); }],
        [t("nodes.version"), function (n) { return n.version || "—"; }],
        [t("nodes.load"), function (n) {
          const cap = n.reported_capacity ? Math.min(n.capacity, n.reported_capacity) : n.capacity;
          return (n.running || 0) + "/" + cap;
        }],
        [t("nodes.labels"), function (n) { return chips(n.labels); }],
        [t("nodes.sources"), function (n) {
          if (!Array.isArray(n.effective_sources)) return "—";
          return h("span", null, chips(n.effective_sources), n.sources_origin ? h("small", { class: "muted block" }, t("origin." + n.sources_origin)) : null);
        }],
        [t("nodes.wechat"), function (n) { return wechatText(n); }],
        [t("nodes.actions"), function (n) {
          return h("button", { type: "button", class: "small-button", "data-node": n.name, onclick: function () { manageNode(n, refresh, message); } }, t("nodes.manage"));
        }],
      ], nodes, { label: t("nodes.list"), rowAttrs: function (n) { return { "data-node-row": n.name, "data-status": n.status }; } }));
    }

    const form = h("form", {
      class: "grid-form", id: "node-form",
      onsubmit: busy(submit, async function () {
        clear(message);
        try {
          const created = await api("POST", CASCADE + "/nodes", {
            node_type: 1, name: name.value, description: description.value,
            api_url: apiUrl.value || null, labels: splitLabels(labels.value),
            capacity: Number(capacity.value || 4),
          });
          const creds = await api("POST", CASCADE + "/nodes/" + created.data.node_id + "/credentials");
          message.append(notice("ok", t("nodes.created", { n: created.data.name })));
          form.reset();
          capacity.value = "4";
          await refresh();
          showCredentials(creds.data, function () { name.focus(); });
        } catch (err) {
          if (err.status !== 401) message.append(notice("error", describe(err)));
        }
      }),
    },
      field(t("nodes.name"), name), field(t("nodes.description"), description),
      field(t("nodes.apiUrl"), apiUrl), field(t("nodes.labels"), labels),
      field(t("nodes.capacity"), capacity), h("div", { class: "field field-submit" }, submit));
    root.append(section(t("nodes.create"), form), message, section(t("nodes.list"), [
      h("div", { class: "actions" }, h("button", { type: "button", onclick: function () { refresh(); } }, t("refresh"))), listBox]));
    await refresh();
    every(5000, function () { refresh().catch(function () { /* shown on the next action */ }); });
  }

  function manageNode(node, refresh, pageMessage) {
    modal(t("nodes.edit") + "：" + node.name, function (body, close, dialog) {
      const message = h("div", { id: "node-dialog-message" });
      const name = h("input", { id: "edit-node-name", value: node.name, maxlength: 100 });
      const description = h("input", { id: "edit-node-description", value: node.description || "" });
      const apiUrl = h("input", { id: "edit-node-api-url", type: "url", value: node.api_url || "" });
      const labels = h("input", { id: "edit-node-labels", value: (node.labels || []).join(", ") });
      const capacity = h("input", { id: "edit-node-capacity", type: "number", min: 1, max: 1000, value: String(node.capacity) });
      const hasSources = Array.isArray(node.effective_sources);
      const sources = h("select", { id: "edit-node-sources" },
        h("option", { value: "" }, t("nodes.sourcesAuto")),
        ["rss", "wechat", "rss,wechat"].map(function (v) { return h("option", { value: v }, v.replace(",", " + ")); }));
      sources.value = Array.isArray(node.sources) ? node.sources.slice().sort().join(",") : "";
      const save = h("button", { type: "submit", class: "primary", id: "edit-node-save" }, t("save"));
      const toggle = h("button", { type: "button", id: "node-toggle" }, node.is_active ? t("disable") : t("enable"));
      const test = h("button", { type: "button", id: "node-test" }, t("nodes.test"));
      const rotate = h("button", { type: "button", class: "warn", id: "node-rotate" }, t("nodes.rotate"));
      const remove = h("button", { type: "button", class: "danger", id: "node-delete" }, t("delete"));
      const testResult = h("div", { id: "node-test-result" });

      const form = h("form", {
        class: "grid-form",
        onsubmit: busy(save, async function () {
          clear(message);
          try {
            const changes = {
              name: name.value, description: description.value, api_url: apiUrl.value || null,
              labels: splitLabels(labels.value), capacity: Number(capacity.value),
            };
            if (hasSources) changes.sources = sources.value ? sources.value.split(",") : null;
            const updated = await api("PUT", CASCADE + "/nodes/" + node.id, changes);
            node = updated.data;
            message.append(notice("ok", t("nodes.saved")));
            refresh();
          } catch (err) { message.append(notice("error", describe(err))); }
        }),
      }, field(t("nodes.name"), name), field(t("nodes.description"), description),
        field(t("nodes.apiUrl"), apiUrl), field(t("nodes.labels"), labels),
        field(t("nodes.capacity"), capacity),
        hasSources ? field(t("nodes.sources"), sources, t("nodes.sourcesHint")) : null,
        h("div", { class: "field field-submit" }, save));

      toggle.addEventListener("click", busy(toggle, async function () {
        clear(message);
        try {
          const updated = await api("PUT", CASCADE + "/nodes/" + node.id, { is_active: !node.is_active });
          node = updated.data;
          toggle.textContent = node.is_active ? t("disable") : t("enable");
          message.append(notice("ok", node.is_active ? t("nodes.enabled") : t("nodes.disabledMsg")));
          refresh();
        } catch (err) { message.append(notice("error", describe(err))); }
      }));
      test.addEventListener("click", busy(test, async function () {
        showIn(testResult, "info", t("nodes.testing"));
        try {
          const r = (await api("POST", CASCADE + "/nodes/" + node.id + "/test-connection", {})).data;
          showIn(testResult, r.reachable ? "ok" : "error", r.api_url + " — " + t("nodes.testResult", {
            r: r.reachable ? t("yes") : t("no"), c: r.status_code === null ? "—" : r.status_code,
            l: r.latency_ms === null ? "—" : r.latency_ms,
            a: r.authenticated === null ? "—" : (r.authenticated ? t("yes") : t("no")),
            e: r.error ? "（" + r.error + "）" : "",
          }));
        } catch (err) { showIn(testResult, "error", describe(err)); }
      }));
      rotate.addEventListener("click", busy(rotate, async function () {
        if (!(await confirmAction(t("nodes.rotateWarn")))) return;
        try {
          const creds = await api("POST", CASCADE + "/nodes/" + node.id + "/credentials");
          close();
          refresh();
          showCredentials(creds.data);
        } catch (err) { message.append(notice("error", describe(err))); }
      }));
      remove.addEventListener("click", busy(remove, async function () {
        if (!(await confirmAction(t("nodes.deleteWarn", { n: node.name })))) return;
        try {
          await api("DELETE", CASCADE + "/nodes/" + node.id);
          close();
          showIn(pageMessage, "ok", t("nodes.deleted"));
          refresh();
        } catch (err) { message.append(notice("error", describe(err))); }
      }));

      body.append(message,
        h("p", { class: "muted" }, t("nodes.apiKey") + "：", node.api_key ? h("code", null, node.api_key) : t("nodes.noCreds")),
        form,
        h("div", { class: "actions" }, toggle, test, rotate, remove),
        testResult,
        wechatSection(node, dialog));
    });
  }

  function wechatSection(node, dialog) {
    const box = h("section", { class: "subcard", id: "node-wechat" }, h("h3", null, t("nodes.wechatTitle")));
    box.append(h("p", null, t("nodes.wechatReported", { s: wechatText(node) })));
    if (!features.wechat_login || !features.wechat_status || node.node_type !== 1) {
      box.append(unavailableNotice("/api/v1/cascade/nodes/{id}/wechat"));
      return box;
    }
    const state = h("p", { id: "wechat-state" });
    const qr = h("div", { class: "qr" });
    let timer = null;
    let qrUrl = null;
    let qrShownFor = null;  // which QR is on screen: its qr_expires_at
    let closed = false;
    const stop = function () {
      clearTimeout(timer);
      if (qrUrl) URL.revokeObjectURL(qrUrl);
      qrUrl = null;
      qrShownFor = null;
    };
    dialog.addEventListener("close", function () { closed = true; stop(); });
    async function showQr(s) {
      try {
        const blob = await api("GET", CASCADE + "/nodes/" + node.id + "/wechat/qr.png", undefined, { blob: true });
        if (closed) return;
        if (qrUrl) URL.revokeObjectURL(qrUrl);
        qrUrl = URL.createObjectURL(blob);
        qrShownFor = s.qr_expires_at || "shown";
        clear(qr).append(h("img", { src: qrUrl, alt: "WeChat QR", width: 200, height: 200 }),
          h("p", { class: "muted small" }, t("nodes.wechatScan", { t: fmtTime(s.qr_expires_at) })));
      } catch (err) { /* not ready yet: the next poll asks again */ }
    }
    async function poll() {
      if (closed) return;
      try {
        const s = (await api("GET", CASCADE + "/nodes/" + node.id + "/wechat")).data;
        if (closed) return;
        const account = s.account && s.account.name ? " · " + s.account.name : "";
        state.textContent = t("nodes.wechatState", { s: t("wechat." + s.state) }) + account +
          (s.expires_at ? " · " + fmtTime(s.expires_at) : "") + (s.error ? " · " + s.error : "");
        const pending = s.state === "waiting_scan" || s.state === "scanned";
        // The node uploads the QR a moment after the request: wait for qr_ready.
        if (s.state === "waiting_scan" && features.wechat_qr && s.qr_ready !== false &&
            qrShownFor !== (s.qr_expires_at || "shown")) {
          await showQr(s);
        }
        if (!pending) { clear(qr); stop(); }
        if (pending && !closed) timer = setTimeout(poll, 2000);
      } catch (err) {
        if (err.status === 401 || closed) return;
        state.textContent = describe(err);
        if (err.status === 0 || err.status >= 500) timer = setTimeout(poll, 5000);
      }
    }
    const start = h("button", { type: "button", id: "wechat-login" }, t("nodes.wechatStart"));
    start.addEventListener("click", busy(start, async function () {
      try {
        stop();
        await api("POST", CASCADE + "/nodes/" + node.id + "/wechat/login", {});
        poll();
      } catch (err) { state.textContent = describe(err); }
    }));
    box.append(state, h("div", { class: "actions" }, start), qr);
    poll();
    return box;
  }

  // --- feeds -----------------------------------------------------------------------------

  async function pageFeeds(root, params, alive) {
    const message = h("div", { id: "feeds-message" });
    const listBox = h("div", { id: "feeds-list" });
    const query = h("input", { id: "feeds-q", type: "search" });
    let page = 1;
    const PAGE_SIZE = 50;

    async function allStatuses() {
      // feed-status has no id filter: read it whole, 200 at a time.
      const items = [];
      for (let p = 1; ; p += 1) {
        const body = await api("GET", CASCADE + "/feed-status?page_size=200&page=" + p);
        items.push.apply(items, body.data.items);
        if (items.length >= body.data.total || !body.data.items.length) return items;
      }
    }

    async function refresh() {
      const search = new URLSearchParams({ page: String(page), page_size: String(PAGE_SIZE) });
      if (query.value.trim()) search.set("q", query.value.trim());
      const [listing, statuses] = await Promise.all([
        api("GET", API + "/feeds?" + search.toString()),
        allStatuses(),
      ]);
      if (!alive()) return;
      const feeds = listing.data.items;
      const statusById = {};
      statuses.forEach(function (s) { statusById[s.feed_id] = s; });
      clear(listBox).append(dataTable([
        [t("feeds.name"), function (f) { return h("strong", null, f.mp_name); }],
        [t("feeds.source"), function (f) {
          return h("span", null, f.source_type, f.source_url ? h("small", { class: "muted block break" }, f.source_url) : (f.faker_id ? h("small", { class: "muted block" }, f.faker_id) : null));
        }],
        [t("feeds.status"), function (f) { return badge(f.status ? "enabled" : "paused"); }],
        [t("feeds.lastCollected"), function (f) { return timeEl((statusById[f.id] || {}).last_collected_at, true); }],
        [t("feeds.freshness"), function (f) { return badge((statusById[f.id] || {}).freshness || "never"); }],
        [t("feeds.articles"), function (f) { return String((statusById[f.id] || {}).article_count || 0); }],
        [t("feeds.links"), function (f) {
          return h("span", { class: "links" }, ["rss", "atom", "json"].map(function (kind) {
            return h("a", { href: "/feed/" + encodeURIComponent(f.id) + "." + kind, target: "_blank", rel: "noopener noreferrer" }, kind.toUpperCase());
          }));
        }],
        [t("feeds.actions"), function (f) {
          return h("span", { class: "row-actions" },
            h("a", { class: "small-button", href: "#/articles?feed_id=" + encodeURIComponent(f.id) }, t("feeds.showArticles")),
            h("button", { type: "button", class: "small-button", onclick: async function () {
              try {
                await api("PUT", API + "/feeds/" + encodeURIComponent(f.id), { status: f.status ? 0 : 1 });
                refresh();
              } catch (err) { showIn(message, "error", describe(err)); }
            } }, f.status ? t("feeds.pause") : t("feeds.resume")),
            h("button", { type: "button", class: "small-button danger", onclick: async function () {
              if (!(await confirmAction(t("feeds.deleteWarn", { n: f.mp_name })))) return;
              try {
                await api("DELETE", API + "/feeds/" + encodeURIComponent(f.id));
                showIn(message, "ok", t("feeds.deleted"));
                refresh();
              } catch (err) { showIn(message, "error", describe(err)); }
            } }, t("delete")));
        }],
      ], feeds, { label: t("feeds.list"), rowAttrs: function (f) { return { "data-feed-row": f.mp_name }; } }),
      pager(listing.data.total, page, PAGE_SIZE, function (p) { page = p; refresh(); }));
    }

    // Add an RSS feed.
    const rssName = h("input", { id: "rss-name", required: true, maxlength: 255 });
    const rssUrl = h("input", { id: "rss-url", type: "url", required: true, placeholder: "https://example.com/feed.xml" });
    const rssLabels = h("input", { id: "rss-labels" });
    const rssSubmit = h("button", { type: "submit", class: "primary", id: "rss-add" }, t("feeds.add"));
    const rssForm = h("form", {
      class: "grid-form", id: "rss-form",
      onsubmit: busy(rssSubmit, async function () {
        try {
          const created = await api("POST", API + "/feeds", {
            mp_name: rssName.value, source_type: "rss", source_url: rssUrl.value, labels: splitLabels(rssLabels.value),
          });
          showIn(message, "ok", t("feeds.added", { n: created.data.mp_name }));
          rssForm.reset();
          refresh();
        } catch (err) { if (err.status !== 401) showIn(message, "error", describe(err)); }
      }),
    }, field(t("feeds.name"), rssName), field(t("feeds.url"), rssUrl), field(t("feeds.labels"), rssLabels),
      h("div", { class: "field field-submit" }, rssSubmit));

    // Find a WeChat account by name.
    let searchCard;
    if (features.feed_search) {
      const query = h("input", { id: "search-query", required: true });
      const results = h("div", { id: "search-results" });
      const go = h("button", { type: "submit", id: "search-submit" }, t("feeds.searchSubmit"));
      searchCard = section(t("feeds.search"), [h("form", {
        class: "inline-form",
        onsubmit: busy(go, async function () {
          clear(results);
          try {
            const body = await api("POST", API + "/feeds/search", { query: query.value });
            const found = Array.isArray(body.data) ? body.data : (body.data.items || []);
            if (!found.length) { results.append(h("p", { class: "muted" }, t("feeds.searchNone"))); return; }
            results.append(h("ul", { class: "search-list" }, found.map(function (a) {
              return h("li", null,
                h("span", null, h("strong", null, a.mp_name), h("small", { class: "muted block" }, a.mp_intro || a.faker_id)),
                h("button", { type: "button", class: "small-button", onclick: async function () {
                  try {
                    const created = await api("POST", API + "/feeds", {
                      mp_name: a.mp_name, faker_id: a.faker_id, mp_intro: a.mp_intro || "",
                      mp_cover: a.mp_cover || "", source_type: "wechat",
                    });
                    showIn(message, "ok", t("feeds.added", { n: created.data.mp_name }));
                    refresh();
                  } catch (err) { showIn(message, "error", describe(err)); }
                } }, t("feeds.add")));
            })));
          } catch (err) {
            if (isUnavailable(err)) results.append(unavailableNotice("POST /api/v1/feeds/search"));
            else if (err.status !== 401) results.append(notice("error", describe(err)));
          }
        }),
      }, field(t("feeds.searchQuery"), query), go), results]);
    } else {
      searchCard = section(t("feeds.search"), unavailableNotice("POST /api/v1/feeds/search"));
    }

    // Import OPML or JSON.
    const file = h("input", { id: "import-file", type: "file", accept: ".opml,.xml,.json,application/json,text/xml" });
    const text = h("textarea", { id: "import-text", rows: 4, placeholder: "<opml …> / [{\"mp_name\": …}]" });
    const report = h("div", { id: "import-report" });
    const importSubmit = h("button", { type: "submit", id: "import-submit" }, t("feeds.importSubmit"));
    const importForm = h("form", {
      id: "import-form",
      onsubmit: busy(importSubmit, async function () {
        clear(report);
        let content = text.value;
        if (file.files && file.files[0]) content = await file.files[0].text();
        content = content.trim();
        if (!content) return;
        const isXml = content.startsWith("<");
        try {
          const body = await api("POST", API + "/feeds/import", content, { contentType: isXml ? "text/x-opml" : "application/json" });
          const d = body.data;
          report.append(notice(d.rejected.length ? "warn" : "ok", t("feeds.importReport", { c: d.created, s: d.skipped.length, r: d.rejected.length, t: d.total_rows })));
          const rows = d.skipped.map(function (r) { return { row: r.row, kind: "skipped", reason: r.reason }; })
            .concat(d.rejected.map(function (r) { return { row: r.row, kind: "rejected", reason: r.reason + (r.errors ? " " + JSON.stringify(r.errors) : "") }; }));
          if (rows.length) {
            report.append(dataTable([
              [t("feeds.row"), function (r) { return String(r.row); }],
              [t("feeds.status"), function (r) { return badge(r.kind === "skipped" ? "not_modified" : "failed"); }],
              [t("feeds.reason"), function (r) { return r.reason; }],
            ], rows.sort(function (a, b) { return a.row - b.row; })));
          }
          importForm.reset();
          refresh();
        } catch (err) { if (err.status !== 401) report.append(notice("error", describe(err))); }
      }),
    }, field(t("feeds.importFile"), file), field(t("feeds.importText"), text), h("div", { class: "actions" }, importSubmit), report);

    root.append(h("div", { class: "cards" }, section(t("feeds.addRss"), rssForm), searchCard, section(t("feeds.import"), importForm)),
      message, section(t("feeds.list"), [
        h("form", { class: "inline-form", role: "search", onsubmit: function (event) { event.preventDefault(); page = 1; refresh(); } },
          field(t("feeds.filter"), query), h("div", { class: "field field-submit" }, h("button", { type: "submit", id: "feeds-search" }, t("art.search")))),
        listBox]));
    await refresh();
  }

  // --- message tasks ---------------------------------------------------------------------

  // Until /console/channels answers (an older parent): the channels it always had.
  let CHANNELS = ["dingtalk", "feishu", "wecom", "bark", "serverchan", "telegram", "webhook"];

  async function pageTasks(root, params, alive) {
    const message = h("div", { id: "tasks-message" });
    const listBox = h("div", { id: "tasks-list" });
    const formBox = h("div", { id: "task-form-box" });
    let feeds = await allFeeds();
    if (!alive()) return;

    async function refresh() {
      const tasks = await allTasks();
      if (!alive()) return;
      clear(listBox).append(dataTable([
        [t("tasks.name"), function (x) { return h("strong", null, x.name); }],
        [t("tasks.type"), function (x) { return x.channel ? x.channel : t("tasks.type" + x.message_type); }],
        [t("tasks.cronCol"), function (x) { return h("code", null, x.cron_exp); }],
        [t("tasks.nextRun"), function (x) { return x.next_run_at ? h("time", { datetime: x.next_run_at, title: x.next_run_local || "" }, fmtTime(x.next_run_at)) : "—"; }],
        [t("tasks.feedsCol"), function (x) { return x.mps_id && x.mps_id.length ? x.mps_id.map(function (m) { return m.mp_name || m.id; }).join("、") : t("tasks.allFeeds"); }],
        [t("feeds.status"), function (x) { return badge(x.status ? "enabled" : "paused"); }],
        [t("feeds.actions"), function (x) {
          const dispatch = h("button", { type: "button", class: "small-button primary", "data-dispatch": x.name }, t("tasks.dispatch"));
          dispatch.addEventListener("click", busy(dispatch, async function () {
            try {
              const d = (await api("POST", CASCADE + "/dispatch", { task_id: x.id })).data;
              clear(message).append(h("p", { class: "notice notice-ok", role: "status" },
                t("tasks.dispatched", { r: short(d.run_id), n: d.allocations.length }), " ",
                h("a", { href: "#/runs" }, t("tasks.viewRun"))));
            } catch (err) { if (err.status !== 401) showIn(message, "error", describe(err)); }
          }));
          const test = h("button", { type: "button", class: "small-button", disabled: !features.task_test,
            title: features.task_test ? null : t("unavailable", { r: "POST /api/v1/message-tasks/{id}/test" }) }, t("tasks.test"));
          test.addEventListener("click", busy(test, async function () {
            try {
              const body = await api("POST", API + "/message-tasks/" + x.id + "/test", {});
              showIn(message, "ok", t("tasks.tested", { m: body.message + (body.data ? " " + JSON.stringify(body.data) : "") }));
            } catch (err) {
              if (isUnavailable(err)) showIn(message, "info", t("unavailable", { r: "POST /api/v1/message-tasks/{id}/test" }));
              else if (err.status !== 401) showIn(message, "error", describe(err));
            }
          }));
          return h("span", { class: "row-actions" },
            h("button", { type: "button", class: "small-button", onclick: function () { taskForm(x); } }, t("edit")),
            h("button", { type: "button", class: "small-button", onclick: async function () {
              try {
                await api("PUT", API + "/message-tasks/" + x.id, { status: x.status ? 0 : 1 });
                refresh();
              } catch (err) { showIn(message, "error", describe(err)); }
            } }, x.status ? t("disable") : t("enable")),
            dispatch, test,
            h("button", { type: "button", class: "small-button danger", onclick: async function () {
              if (!(await confirmAction(t("tasks.deleteWarn", { n: x.name })))) return;
              try {
                await api("DELETE", API + "/message-tasks/" + x.id);
                showIn(message, "ok", t("tasks.deleted"));
                refresh();
              } catch (err) { showIn(message, "error", describe(err)); }
            } }, t("delete")));
        }],
      ], tasks, { label: t("tasks.list"), rowAttrs: function (x) { return { "data-task-row": x.name }; } }));
    }

    function taskForm(task) {
      const editing = Boolean(task);
      task = task || { name: "", message_type: 1, web_hook_url: "", cron_exp: "*/30 * * * *", message_template: "", mps_id: [], headers: {}, cookies: "", labels: [], status: 1 };
      const name = h("input", { id: "task-name", required: true, value: task.name, maxlength: 255 });
      const type = h("select", { id: "task-type" },
        h("option", { value: "1" }, t("tasks.type1")), h("option", { value: "0" }, t("tasks.type0")));
      type.value = String(task.message_type);
      const channel = h("select", { id: "task-channel", disabled: !features.task_channel },
        h("option", { value: "" }, t("tasks.channelAuto")), CHANNELS.map(function (c) { return h("option", { value: c }, c); }));
      channel.value = task.channel || "";
      const url = h("input", { id: "task-url", type: "url", value: task.web_hook_url || "", placeholder: "https://oapi.dingtalk.com/robot/send?access_token=…" });
      const signSecret = h("input", { id: "task-sign-secret", type: "password", autocomplete: "off", disabled: !features.task_sign_secret });
      const cron = h("input", { id: "task-cron", required: true, value: task.cron_exp, class: "mono" });
      const nextRuns = h("div", { id: "task-next-runs", class: "muted small", "aria-live": "polite" });
      const picked = {};
      (task.mps_id || []).forEach(function (m) { picked[m.id] = true; });
      const feedBoxes = h("fieldset", { class: "checks", id: "task-feeds" }, h("legend", null, t("tasks.feeds")),
        feeds.map(function (f) {
          const id = "task-feed-" + f.id.replace(/[^A-Za-z0-9_-]/g, "_");
          return h("label", { for: id, class: "check" }, h("input", { type: "checkbox", id: id, value: f.id, "data-name": f.mp_name, checked: picked[f.id] }), " ", f.mp_name);
        }));
      const template = h("textarea", { id: "task-template", rows: 6, class: "mono", placeholder: "{% for a in articles %}{{ a.title }} {{ a.url }}\n{% endfor %}" }, task.message_template || "");
      const preview = h("pre", { id: "task-preview", class: "preview", "aria-live": "polite" });
      const headers = h("textarea", { id: "task-headers", rows: 3, class: "mono" }, JSON.stringify(task.headers || {}, null, 2));
      const cookies = h("input", { id: "task-cookies", value: task.cookies || "" });
      const labels = h("input", { id: "task-labels", value: (task.labels || []).join(", ") });
      const enabled = h("input", { id: "task-enabled", type: "checkbox", checked: task.status === 1 });
      const pushNewest = h("input", { id: "task-push-newest", type: "number", min: 0, max: 50, value: String(task.push_newest || 0) });
      const save = h("button", { type: "submit", class: "primary", id: "task-save" }, t("tasks.save"));
      const formMessage = h("div", { id: "task-form-message" });

      const selectedFeeds = function () {
        return Array.from(feedBoxes.querySelectorAll("input:checked")).map(function (box) { return { id: box.value, mp_name: box.getAttribute("data-name") }; });
      };
      // Answers may arrive out of order: only the latest question's answer is shown.
      let cronAsked = 0;
      let previewAsked = 0;
      const updateNextRuns = debounce(async function () {
        const expression = cron.value.trim();
        const mine = ++cronAsked;
        if (!expression) { clear(nextRuns); return; }
        try {
          const d = (await api("GET", API + "/cron/next-runs?count=5&cron_exp=" + encodeURIComponent(expression))).data;
          if (mine !== cronAsked) return;
          if (!d.next_runs.length) { clear(nextRuns).append(notice("warn", t("tasks.neverRuns"))); return; }
          clear(nextRuns).append(h("span", null, t("tasks.nextRuns", { z: d.timezone })),
            h("ol", null, d.next_runs.map(function (r) { return h("li", null, timeEl(r, false)); })));
        } catch (err) {
          if (mine === cronAsked && err.status !== 401) clear(nextRuns).append(notice("error", describe(err)));
        }
      }, 250);
      const updatePreview = debounce(async function () {
        if (!features.task_preview) return;
        const mine = ++previewAsked;
        try {
          // The parent renders for one feed: the first one picked (else its own choice).
          const body = { message_template: template.value, message_type: Number(type.value) };
          const first = selectedFeeds()[0];
          if (first) body.feed_id = first.id;
          if (editing) body.task_id = task.id;
          const d = (await api("POST", API + "/message-tasks/preview", body)).data;
          if (mine !== previewAsked) return;
          const rendered = d && (d.rendered !== undefined ? d.rendered : (d.body !== undefined ? d.body : d));
          preview.textContent = typeof rendered === "string" ? rendered : JSON.stringify(rendered, null, 2);
        } catch (err) {
          if (mine !== previewAsked) return;
          if (isUnavailable(err)) preview.textContent = t("unavailable", { r: "POST /api/v1/message-tasks/preview" });
          else if (err.status !== 401) preview.textContent = describe(err);
        }
      }, 400);
      cron.addEventListener("input", function () { cronAsked += 1; clear(nextRuns); updateNextRuns(); });
      template.addEventListener("input", updatePreview);
      feedBoxes.addEventListener("change", updatePreview);
      type.addEventListener("change", updatePreview);

      const form = h("form", {
        class: "task-form", id: "task-form",
        onsubmit: busy(save, async function () {
          clear(formMessage);
          let headerObject;
          try {
            headerObject = headers.value.trim() ? JSON.parse(headers.value) : {};
            if (!headerObject || typeof headerObject !== "object" || Array.isArray(headerObject)) throw new Error("not an object");
          } catch (e) {
            formMessage.append(notice("error", t("tasks.headersInvalid")));
            headers.focus();
            return;
          }
          const body = {
            name: name.value, message_type: Number(type.value), web_hook_url: url.value,
            cron_exp: cron.value.trim(), message_template: template.value, mps_id: selectedFeeds(),
            headers: headerObject, cookies: cookies.value, labels: splitLabels(labels.value),
            status: enabled.checked ? 1 : 0,
          };
          if (features.task_channel && channel.value) body.channel = channel.value;
          if (features.task_sign_secret && signSecret.value) body.sign_secret = signSecret.value;
          if (features.task_push_newest) body.push_newest = Number(pushNewest.value || 0);
          try {
            if (editing) await api("PUT", API + "/message-tasks/" + task.id, body);
            else await api("POST", API + "/message-tasks", body);
            showIn(message, "ok", t("tasks.saved"));
            clear(formBox);
            refresh();
          } catch (err) { if (err.status !== 401) formMessage.append(notice("error", describe(err))); }
        }),
      },
        h("div", { class: "grid-form" },
          field(t("tasks.name"), name), field(t("tasks.type"), type),
          field(t("tasks.channel"), channel, features.task_channel ? null : t("tasks.channelUnsupported")),
          field(t("tasks.url"), url), field(t("tasks.signSecret"), signSecret),
          h("div", { class: "field" }, h("label", { for: "task-cron" }, t("tasks.cron")), cron, nextRuns)),
        feedBoxes,
        h("div", { class: "two-col" }, field(t("tasks.template"), template), h("div", { class: "field" }, h("span", { class: "label" }, t("tasks.preview")), preview)),
        h("div", { class: "grid-form" },
          field(t("tasks.headers"), headers), field(t("tasks.cookies"), cookies), field(t("tasks.labels"), labels),
          features.task_push_newest ? field(t("tasks.pushNewest"), pushNewest, t("tasks.pushNewestHint")) : null,
          h("div", { class: "field check-field" }, h("label", { for: "task-enabled", class: "check" }, enabled, " ", t("tasks.enabled")))),
        formMessage,
        h("div", { class: "actions" }, save, h("button", { type: "button", onclick: function () { clear(formBox); } }, t("cancel"))));
      clear(formBox).append(section(editing ? t("tasks.editing", { n: task.name }) : t("tasks.new"), form));
      updateNextRuns();
      if (features.task_preview) updatePreview();
      else preview.textContent = t("unavailable", { r: "POST /api/v1/message-tasks/preview" });
      name.focus();
    }

    const create = h("button", { type: "button", class: "primary", id: "task-new", onclick: function () { taskForm(null); } }, t("tasks.new"));
    root.append(h("div", { class: "actions" }, create), formBox, message, section(t("tasks.list"), listBox));
    await refresh();
  }

  // --- runs and allocations --------------------------------------------------------------

  async function pageRuns(root, params, alive) {
    const summary = h("p", { id: "runs-summary", class: "summary" });
    const live = h("p", { class: "muted small", id: "runs-live" });
    const listBox = h("div", { id: "runs-list" });
    const status = h("select", { id: "runs-status" },
      h("option", { value: "" }, t("runs.all")),
      ["pending", "leased", "completed", "dead"].map(function (s) { return h("option", { value: s }, t("status." + s)); }));
    status.value = params.get("status") || "";
    let names = { nodes: {}, tasks: {}, feeds: {} };

    async function loadNames() {
      const [nodes, tasks, feeds] = await Promise.all([allNodes(), allTasks(), allFeeds()]);
      names = { nodes: byId(nodes), tasks: byId(tasks), feeds: byId(feeds) };
    }

    async function refresh() {
      const query = "?page_size=100" + (status.value ? "&status=" + status.value : "");
      const [stats, allocations] = await Promise.all([
        api("GET", CASCADE + "/stats"),
        api("GET", CASCADE + "/allocations" + query),
      ]);
      if (!alive()) return;
      const s = stats.data;
      summary.textContent = t("runs.summary", { p: s.pending, l: s.leased, c: s.completed_today, f: s.failed_today, d: s.dead });
      live.textContent = t("runs.live", { t: fmtTime(new Date().toISOString()) });
      const runs = [];
      const byRun = {};
      allocations.data.items.forEach(function (a) {
        if (!byRun[a.run_id]) { byRun[a.run_id] = []; runs.push(a.run_id); }
        byRun[a.run_id].push(a);
      });
      clear(listBox);
      if (!runs.length) { listBox.append(h("p", { class: "muted" }, t("empty"))); return; }
      runs.forEach(function (runId) {
        const items = byRun[runId];
        const task = names.tasks[items[0].task_id];
        listBox.append(h("section", { class: "card run", "data-run": runId },
          h("h2", null, (task ? task.name : short(items[0].task_id)) + " · " + t("runs.run") + " " + short(runId),
            h("small", { class: "muted" }, " " + fmtTime(items[items.length - 1].created_at))),
          dataTable([
            [t("runs.feeds"), function (a) { return a.feed_ids.map(function (id) { return (names.feeds[id] || {}).mp_name || id; }).join("、"); }],
            [t("runs.status"), function (a) { return badge(a.status); }],
            [t("runs.node"), function (a) { return a.leased_to ? ((names.nodes[a.leased_to] || {}).name || short(a.leased_to)) : "—"; }],
            [t("runs.attempts"), function (a) { return a.attempt + "/" + a.max_attempts; }],
            [t("runs.expires"), function (a) { return a.lease_expires_at ? timeEl(a.lease_expires_at, true) : "—"; }],
            [t("runs.results"), function (a) {
              if (!a.results || !a.results.length) return "—";
              return a.results.map(function (r) { return (r.mp_name || r.mp_id) + ": " + (r.new_count !== undefined ? r.new_count : r.article_count) + "/" + (r.pushed_count !== undefined ? r.pushed_count : "?"); }).join("; ");
            }],
            [t("runs.error"), function (a) { return a.last_error ? h("span", { class: "error-text" }, a.last_error) : "—"; }],
            [t("runs.updated"), function (a) { return timeEl(a.updated_at, true); }],
          ], items, { rowAttrs: function (a) { return { "data-allocation-status": a.status }; } })));
      });
    }

    status.addEventListener("change", function () { refresh(); });
    root.append(h("div", { class: "inline-form" }, field(t("runs.filter"), status)), summary, live, listBox);
    await loadNames();
    await refresh();
    let ticks = 0;
    every(POLL_MS, async function () {
      try {
        ticks += 1;
        if (ticks % 5 === 0) await loadNames();
        await refresh();
      } catch (err) { /* a 401 already returned to login; others retry next tick */ }
    });
  }

  // --- deliveries ------------------------------------------------------------------------

  async function pageDeliveries(root, params, alive) {
    if (!features.deliveries) { root.append(unavailableNotice("GET /api/v1/deliveries")); return; }
    const message = h("div", { id: "deliveries-message" });
    const listBox = h("div", { id: "deliveries-list" });
    const status = h("select", { id: "deliveries-status" }, h("option", { value: "" }, t("logs.any")),
      ["pending", "sent", "retrying", "failed"].map(function (s) { return h("option", { value: s }, t("status." + s)); }));
    status.value = params.get("status") || "";
    const [tasks, feeds] = await Promise.all([allTasks(), allFeeds()]);
    const taskSelect = h("select", { id: "deliveries-task" }, h("option", { value: "" }, t("logs.any")),
      tasks.map(function (x) { return h("option", { value: x.id }, x.name); }));
    const taskNames = byId(tasks);
    const feedNames = byId(feeds);
    let page = 1;

    async function refresh() {
      const query = new URLSearchParams({ page: String(page), page_size: "50" });
      if (status.value) query.set("status", status.value);
      if (taskSelect.value) query.set("task_id", taskSelect.value);
      let body;
      try {
        body = await api("GET", API + "/deliveries?" + query.toString());
      } catch (err) {
        if (isUnavailable(err)) { clear(listBox).append(unavailableNotice("GET /api/v1/deliveries")); return; }
        throw err;
      }
      if (!alive()) return;
      const items = Array.isArray(body.data) ? body.data : body.data.items;
      const total = body.data.total !== undefined ? body.data.total : items.length;
      clear(listBox).append(dataTable([
        [t("del.task"), function (d) { return (taskNames[d.task_id] || {}).name || short(d.task_id); }],
        [t("del.feed"), function (d) { return (feedNames[d.feed_id] || {}).mp_name || d.feed_id || "—"; }],
        [t("del.status"), function (d) { return badge(d.status); }],
        [t("del.channel"), function (d) { return d.channel || "—"; }],
        [t("del.articles"), function (d) { return d.article_count !== undefined ? String(d.article_count) : "—"; }],
        [t("del.attempts"), function (d) { return String(d.attempts !== undefined ? d.attempts : (d.attempt || "—")); }],
        [t("del.error"), function (d) {
          const text = d.vendor_message || d.last_error || d.error || (d.vendor_code ? String(d.vendor_code) : "");
          return text && d.status !== "sent" ? h("span", { class: "error-text" }, text) : "—";
        }],
        [t("del.updated"), function (d) { return timeEl(d.updated_at || d.created_at, true); }],
        [t("feeds.actions"), function (d) {
          if (d.status !== "failed" || !features.delivery_retry) return "—";
          const retry = h("button", { type: "button", class: "small-button" }, t("del.retry"));
          retry.addEventListener("click", busy(retry, async function () {
            try {
              await api("POST", API + "/deliveries/" + encodeURIComponent(d.id) + "/retry", {});
              showIn(message, "ok", t("del.retried"));
              refresh();
            } catch (err) { showIn(message, "error", describe(err)); }
          }));
          return retry;
        }],
      ], items, { rowAttrs: function (d) { return { "data-delivery-status": d.status }; } }),
      pager(total, page, 50, function (p) { page = p; refresh(); }));
    }
    status.addEventListener("change", function () { page = 1; refresh(); });
    taskSelect.addEventListener("change", function () { page = 1; refresh(); });
    root.append(h("div", { class: "inline-form" }, field(t("del.status"), status), field(t("del.task"), taskSelect)), message, listBox);
    await refresh();
  }

  // --- sync logs -------------------------------------------------------------------------

  const OPERATIONS = ["node_online", "node_offline", "sync_feeds", "sync_tasks", "report_result"];

  function logTable(items, nodeNames) {
    return dataTable([
      [t("logs.time"), function (e) { return timeEl(e.started_at, false); }],
      [t("logs.node"), function (e) { return (nodeNames[e.node_id] || {}).name || short(e.node_id); }],
      [t("logs.operation"), function (e) { return h("code", null, e.operation); }],
      [t("logs.direction"), function (e) { return e.direction; }],
      [t("logs.status"), function (e) { return badge(e.status); }],
      [t("logs.count"), function (e) { return String(e.data_count); }],
      [t("logs.error"), function (e) { return e.error_message ? h("span", { class: "error-text" }, e.error_message) : "—"; }],
    ], items, { rowAttrs: function (e) { return { "data-operation": e.operation, "data-log-status": e.status }; } });
  }

  async function pageLogs(root, params, alive) {
    const nodes = await allNodes();
    if (!alive()) return;
    const nodeNames = byId(nodes);
    const node = h("select", { id: "logs-node" }, h("option", { value: "" }, t("logs.any")),
      nodes.map(function (n) { return h("option", { value: n.id }, n.name); }));
    const operation = h("select", { id: "logs-operation" }, h("option", { value: "" }, t("logs.any")),
      OPERATIONS.map(function (o) { return h("option", { value: o }, o); }));
    const status = h("select", { id: "logs-status" }, h("option", { value: "" }, t("logs.any")),
      ["success", "not_modified", "failed"].map(function (s) { return h("option", { value: s }, t("status." + s)); }));
    const from = h("input", { id: "logs-from", type: "datetime-local" });
    const to = h("input", { id: "logs-to", type: "datetime-local" });
    node.value = params.get("node_id") || "";
    operation.value = params.get("operation") || "";
    status.value = params.get("status") || "";
    const listBox = h("div", { id: "logs-list" });
    let offset = 0;

    async function refresh() {
      const timed = Boolean(from.value || to.value);
      const limit = timed ? 200 : 50;
      const query = new URLSearchParams({ limit: String(limit), offset: String(timed ? 0 : offset) });
      if (node.value) query.set("node_id", node.value);
      if (operation.value) query.set("operation", operation.value);
      if (status.value) query.set("status", status.value);
      const body = await api("GET", CASCADE + "/sync-logs?" + query.toString());
      if (!alive()) return;
      let items = body.data.items;
      if (timed) {
        const start = from.value ? new Date(from.value).getTime() : -Infinity;
        const end = to.value ? new Date(to.value).getTime() : Infinity;
        items = items.filter(function (e) { const at = new Date(e.started_at).getTime(); return at >= start && at <= end; });
      }
      clear(listBox).append(logTable(items, nodeNames),
        timed ? h("p", { class: "muted small" }, t("logs.timeNote"))
          : pager(body.data.total, Math.floor(offset / limit) + 1, limit, function (p) { offset = (p - 1) * limit; refresh(); }));
    }
    const apply = h("button", { type: "submit", id: "logs-apply" }, t("logs.apply"));
    root.append(h("form", {
      class: "inline-form", id: "logs-form",
      onsubmit: busy(apply, async function () { offset = 0; await refresh(); }),
    }, field(t("logs.node"), node), field(t("logs.operation"), operation), field(t("logs.status"), status),
      field(t("logs.from"), from), field(t("logs.to"), to), h("div", { class: "field field-submit" }, apply)), listBox);
    await refresh();
  }

  // --- articles --------------------------------------------------------------------------

  async function pageArticles(root, params, alive) {
    const [feeds, nodes] = await Promise.all([allFeeds(), allNodes()]);
    if (!alive()) return;
    const feedNames = byId(feeds);
    const nodeNames = byId(nodes);
    const q = h("input", { id: "articles-q", type: "search", value: params.get("q") || "" });
    const feed = h("select", { id: "articles-feed" }, h("option", { value: "" }, t("logs.any")),
      feeds.map(function (f) { return h("option", { value: f.id }, f.mp_name); }));
    feed.value = params.get("feed_id") || "";
    const listBox = h("div", { id: "articles-list" });
    let page = 1;

    async function refresh() {
      const query = new URLSearchParams({ page: String(page), page_size: "20" });
      if (q.value.trim()) query.set("q", q.value.trim());
      if (feed.value) query.set("feed_id", feed.value);
      const body = await api("GET", API + "/articles?" + query.toString());
      if (!alive()) return;
      clear(listBox).append(dataTable([
        [t("art.title"), function (a) {
          return httpUrl(a.url) ? h("a", { href: a.url, target: "_blank", rel: "noopener noreferrer" }, a.title || a.url) : a.title;
        }],
        [t("art.feed"), function (a) { return (feedNames[a.mp_id] || {}).mp_name || a.mp_id; }],
        [t("art.published"), function (a) { return a.publish_time ? fmtTime(a.publish_time) : "—"; }],
        [t("art.collected"), function (a) { return timeEl(a.created_at, true); }],
        [t("art.node"), function (a) { return (nodeNames[a.node_id] || {}).name || short(a.node_id); }],
      ], body.data.items, { rowAttrs: function (a) { return { "data-article": a.title }; } }),
      pager(body.data.total, page, 20, function (p) { page = p; refresh(); }));
    }
    const go = h("button", { type: "submit", id: "articles-search" }, t("art.search"));
    root.append(h("form", {
      class: "inline-form", role: "search",
      onsubmit: busy(go, async function () { page = 1; await refresh(); }),
    }, field(t("art.query"), q), field(t("art.feed"), feed), h("div", { class: "field field-submit" }, go)), listBox);
    feed.addEventListener("change", function () { page = 1; refresh(); });
    await refresh();
  }

  // --- account ---------------------------------------------------------------------------

  async function pageAccount(root) {
    const message = h("div", { id: "account-message" });
    const current = h("input", { id: "acc-current", type: "password", autocomplete: "current-password", required: true });
    const fresh = h("input", { id: "acc-new", type: "password", autocomplete: "new-password", required: true, minlength: 8 });
    const repeat = h("input", { id: "acc-repeat", type: "password", autocomplete: "new-password", required: true });
    const submit = h("button", { type: "submit", class: "primary", id: "acc-submit" }, t("acc.submit"));
    root.append(h("p", null, t("acc.user", { u: me ? me.username : "" })),
      section(t("acc.change"), h("form", {
        class: "grid-form", id: "password-form",
        onsubmit: busy(submit, async function () {
          clear(message);
          if (fresh.value !== repeat.value) { message.append(notice("error", t("acc.mismatch"))); return; }
          try {
            await api("POST", API + "/auth/password", { current_password: current.value, new_password: fresh.value });
            sessionEnded(t("login.passwordChanged"), "info");
          } catch (err) { if (err.status !== 401) message.append(notice("error", describe(err))); }
        }),
      }, field(t("acc.current"), current), field(t("acc.new"), fresh), field(t("acc.repeat"), repeat),
        h("div", { class: "field field-submit" }, submit)), { id: "account-password" }),
      message,
      section(t("logout"), [h("p", { class: "muted" }, t("acc.logoutHint")),
        h("button", { type: "button", class: "danger", id: "account-logout", onclick: logout }, t("logout"))]));
  }

  // --- start -----------------------------------------------------------------------------

  window.addEventListener("hashchange", function () { if (token) render(); });
  document.getElementById("skip-link").addEventListener("click", function (event) {
    // Not a navigation: "#main" is not a page of the console.
    event.preventDefault();
    const main = document.getElementById("main");
    if (main) main.focus();
  });
  render();
})();
