/* CourseBridge revenue dashboard: KPI tiles per currency and ECharts charts for one currency.
 * Amounts of different currencies are never added; every figure carries its currency code. */
(function () {
  "use strict";
  var KEY = "coursebridge.analytics.token";
  var DAY = 864e5;
  var $ = function (id) { return document.getElementById(id); };
  var status = $("status");
  var charts = {};
  var state = {};
  window.coursebridgeDashboard = state;  // what was drawn, for people and tests to inspect

  function token() { return sessionStorage.getItem(KEY); }
  function showLogin(message) {
    $("login").hidden = false;
    status.textContent = message || "Enter the admin token to see the dashboard.";
  }
  function getJSON(url) {
    return fetch(url, {headers: {Authorization: "Bearer " + token()}}).then(function (r) {
      if (r.status === 401) { sessionStorage.removeItem(KEY); throw new Error("unauthorized"); }
      if (!r.ok) return r.json().then(function (b) { throw new Error(b.message || r.statusText); });
      return r.json();
    });
  }
  function iso(d) { return d.toISOString().slice(0, 10); }
  function money(value, currency) {
    var n = Number(value || 0).toLocaleString("en", {minimumFractionDigits: 2, maximumFractionDigits: 2});
    return n + " " + currency;
  }
  function pct(value) { return value === null || value === undefined ? "–" : (100 * value).toFixed(1) + " %"; }

  /* Every day of the range, so days without sales are drawn at zero on a real time axis. */
  function days(from, to) {
    var out = [], t = Date.parse(from + "T00:00:00Z"), end = Date.parse(to + "T00:00:00Z");
    for (; t <= end; t += DAY) out.push(iso(new Date(t)));
    return out;
  }
  function months(from, to) {
    var out = [], y = +from.slice(0, 4), m = +from.slice(5, 7);
    var last = to.slice(0, 7);
    for (;;) {
      var key = y + "-" + String(m).padStart(2, "0");
      out.push(key + "-01");
      if (key >= last) return out;
      m += 1; if (m > 12) { m = 1; y += 1; }
    }
  }
  function series(labels, rows, keyField, field) {
    var byKey = {};
    rows.forEach(function (r) { byKey[r[keyField]] = Number(r[field] || 0); });
    return labels.map(function (k) { return [k, byKey[k] || 0]; });
  }

  function chart(id) {
    if (!charts[id]) charts[id] = echarts.init($(id), null, {renderer: "svg"});
    return charts[id];
  }
  function timeChart(id, unit, list) {
    chart(id).setOption({
      animation: false,
      tooltip: {trigger: "axis"},
      legend: {top: 0},
      grid: {left: 70, right: 20, top: 30, bottom: 30},
      xAxis: {type: "time"},
      yAxis: {type: "value", name: unit, axisLabel: {formatter: function (v) { return v.toLocaleString("en"); }}},
      series: list
    }, true);
  }
  function monthChart(id, labels, list, yAxis) {
    chart(id).setOption({
      animation: false,
      tooltip: {trigger: "axis"},
      legend: {top: 0},
      grid: {left: 70, right: 50, top: 30, bottom: 30},
      xAxis: {type: "category", data: labels.map(function (m) { return m.slice(0, 7); })},
      yAxis: yAxis,
      series: list
    }, true);
  }

  function tile(name, label, value, currency, sub) {
    var el = document.createElement("div");
    el.className = "tile";
    el.setAttribute("data-kpi", name);
    if (currency) el.setAttribute("data-currency", currency);
    var l = document.createElement("div"); l.className = "label"; l.textContent = label;
    var v = document.createElement("div"); v.className = "value"; v.textContent = value;
    el.appendChild(l); el.appendChild(v);
    if (sub) { var s = document.createElement("div"); s.className = "sub"; s.textContent = sub; el.appendChild(s); }
    return el;
  }
  function renderKpis(summary) {
    var box = $("kpis");
    box.textContent = "";
    summary.currencies.forEach(function (c) {
      var row = document.createElement("div");
      row.className = "kpi-row";
      row.setAttribute("data-currency", c.currency);
      var h = document.createElement("h3"); h.textContent = c.currency; row.appendChild(h);
      var mrrMonth = "in " + c.mrr_month.slice(0, 7);
      row.appendChild(tile("gross", "Gross (approved)", money(c.gross, c.currency), c.currency, c.purchases + " charges"));
      row.appendChild(tile("net", "Net", money(c.net, c.currency), c.currency, "gross − refunds − chargebacks"));
      row.appendChild(tile("refunds", "Refunds", money(c.refunds, c.currency), c.currency,
        c.refund_count + " refunds" + (c.partial_refund_count ? ", " + c.partial_refund_count + " partial (amount not sent by Hotmart)" : "")));
      row.appendChild(tile("chargebacks", "Chargebacks", money(c.chargebacks, c.currency), c.currency, c.chargeback_count + " chargebacks"));
      row.appendChild(tile("completed", "Completed (warranty over)", money(c.completed, c.currency), c.currency, c.completed_count + " charges"));
      row.appendChild(tile("producer_net", "Producer net", money(c.producer_net, c.currency), c.currency, "your commission, in its currency"));
      row.appendChild(tile("mrr", "MRR", money(c.mrr, c.currency), c.currency, mrrMonth));
      row.appendChild(tile("active_subscribers", "Active subscribers", String(c.active_subscribers), c.currency,
        c.new_subscribers + " new in the range"));
      box.appendChild(row);
    });
    var churn = document.createElement("div");
    churn.className = "kpi-row";
    churn.appendChild(tile("churn", "Churn (ended months in range)", pct(summary.churn.churn_rate), null,
      summary.churn.churned + " of " + summary.churn.subscribers_at_start + " subscribers left"));
    box.appendChild(churn);
    var conv = $("converted");
    if (summary.converted) {
      var k = summary.converted, cur = k.reporting_currency;
      conv.hidden = false;
      conv.textContent = "Converted into " + cur + " with the daily rates you loaded (analytics rates load): gross " +
        money(k.gross, cur) + ", net " + money(k.net, cur) + ", producer net " + money(k.producer_net, cur) + "." +
        (k.missing_rates.length ? " " + k.missing_rates.length + " day/currency pairs had no rate and are left out." : "");
    } else {
      conv.hidden = true;
    }
  }

  /* Plain tables built with textContent: the figures never become markup. */
  function table(el, head, rows) {
    el.textContent = "";
    var tr = document.createElement("tr");
    head.forEach(function (h) { var th = document.createElement("th"); th.textContent = h; tr.appendChild(th); });
    el.appendChild(tr);
    rows.forEach(function (cells) {
      var row = document.createElement("tr");
      cells.forEach(function (c) { var td = document.createElement("td"); td.textContent = c; row.appendChild(td); });
      el.appendChild(row);
    });
  }
  function hours(value) { return value === null || value === undefined ? "–" : value.toFixed(1) + " h"; }
  function renderLearning(cohorts, refunds) {
    state.learning = {cohorts: cohorts, refunds: refunds};
    var note = $("learning-note");
    if (!cohorts || !refunds) { note.textContent = "Learning figures could not be loaded."; return; }
    note.textContent = cohorts.activity.events ?
      cohorts.activity.events + " TalentLMS activities recorded, the latest on " + cohorts.activity.last_occurred_at.slice(0, 10) +
        ". First access = first TalentLMS sign-in after the purchase (portal-level)." :
      "No TalentLMS activity recorded: enrollment reads it only with TalentLMS credentials.";
    table($("learning-cohorts"), ["product", "month", "buyers", "started", "completed", "completion", "median to first access"],
      cohorts.rows.map(function (r) {
        return [r.product_id, r.cohort_month.slice(0, 7), r.buyers, r.started, r.completed, pct(r.completion_rate), hours(r.first_access_hours_median)];
      }));
    table($("learning-refunds"), ["product", "progress", "buyers", "refunded", "refund rate"],
      refunds.rows.map(function (r) { return [r.product_id, r.bucket.replace("_", " "), r.buyers, r.refunded, pct(r.refund_rate)]; }));
  }

  function fillSelect(select, values, keep, first) {
    var current = keep !== undefined ? keep : select.value;
    select.textContent = "";
    if (first) { var o = document.createElement("option"); o.value = ""; o.textContent = first; select.appendChild(o); }
    values.forEach(function (v) { var o = document.createElement("option"); o.value = v; o.textContent = v; select.appendChild(o); });
    if (current && values.indexOf(current) >= 0) select.value = current;
  }

  function load() {
    if (!token()) { showLogin(); return; }
    $("login").hidden = true;
    var from = $("from").value, to = $("to").value, product = $("product").value, report = $("report").value;
    var q = "from=" + from + "&to=" + to + (product ? "&product=" + encodeURIComponent(product) : "");
    status.textContent = "Loading…";
    document.body.removeAttribute("data-rendered");
    getJSON("/revenue/options").then(function (options) {
      fillSelect($("product"), options.products, product, "all products");
      fillSelect($("report"), options.reporting_currencies, report, "no conversion");
      return Promise.all([
        getJSON("/revenue/daily?" + q), getJSON("/revenue/summary?" + q + (report ? "&report=" + report : "")),
        getJSON("/views/mrr_monthly?" + q), getJSON("/views/churn_monthly?" + q),
        getJSON("/views/refund_rates_monthly?" + q), Promise.resolve(options),
        // Learning is optional (off without TalentLMS credentials): its failure never hides revenue.
        getJSON("/learning/cohorts?" + q).catch(function () { return null; }),
        getJSON("/learning/refunds-by-progress?" + q).catch(function () { return null; })]);
    }).then(function (res) {
      var daily = res[0], summary = res[1], mrr = res[2], churn = res[3], rates = res[4], options = res[5];
      renderLearning(res[6], res[7]);
      // Charts show one currency: the chosen one, else the one with the most charges in the range.
      var present = summary.currencies.map(function (c) { return c.currency; });
      var choices = options.currencies.length ? options.currencies : present;
      var busiest = summary.currencies.slice().sort(function (a, b) { return b.purchases - a.purchases; })[0];
      var currency = $("currency").value || (busiest ? busiest.currency : choices[0]);
      fillSelect($("currency"), choices, currency);
      currency = $("currency").value || currency;
      renderKpis(summary);

      var labels = days(from, to);
      var mine = daily.filter(function (r) { return r.currency === currency; });
      var net = series(labels, mine, "date", "net");
      var gross = series(labels, mine, "date", "gross");
      var refunds = series(labels, mine, "date", "refunds");
      var chargebacks = series(labels, mine, "date", "chargebacks");
      Array.prototype.forEach.call(document.querySelectorAll("h2 .unit"), function (el) { el.textContent = "(" + currency + ")"; });
      timeChart("chart-net", currency, [{name: "net " + currency, type: "line", showSymbol: false, data: net}]);
      timeChart("chart-gross", currency, [
        {name: "gross", type: "bar", data: gross},
        {name: "refunds", type: "bar", data: refunds},
        {name: "chargebacks", type: "bar", data: chargebacks}]);

      var monthLabels = months(from, to);
      var mrrMine = mrr.filter(function (r) { return r.currency === currency; });
      monthChart("chart-mrr", monthLabels, [{name: "MRR " + currency, type: "bar",
        data: series(monthLabels, mrrMine, "month", "mrr").map(function (p) { return p[1]; })}],
        {type: "value", name: currency});
      monthChart("chart-churn", monthLabels, [
        {name: "active subscribers", type: "bar", data: series(monthLabels, mrrMine, "month", "active_subscribers").map(function (p) { return p[1]; })},
        {name: "new subscribers", type: "bar", data: series(monthLabels, mrrMine, "month", "new_subscribers").map(function (p) { return p[1]; })},
        {name: "churn %", type: "line", yAxisIndex: 1, symbol: "diamond", symbolSize: 8,
          data: monthLabels.map(function (m) { var r = churn.filter(function (c) { return c.month === m; })[0]; return r && r.churn_rate !== null && !r.in_progress ? +(100 * r.churn_rate).toFixed(2) : null; })}],
        [{type: "value", name: "subscribers"}, {type: "value", name: "%", min: 0}]);
      var ratesMine = rates.filter(function (r) { return r.currency === currency; });
      monthChart("chart-rates", monthLabels, [
        {name: "refund rate %", type: "bar", data: series(monthLabels, ratesMine, "month", "refund_rate").map(function (p) { return +(100 * p[1]).toFixed(2); })},
        {name: "chargeback rate %", type: "bar", data: series(monthLabels, ratesMine, "month", "chargeback_rate").map(function (p) { return +(100 * p[1]).toFixed(2); })}],
        {type: "value", name: "%"});

      state.currency = currency; state.from = from; state.to = to; state.product = product || null;
      state.daily = daily; state.summary = summary; state.labels = labels;
      state.series = {net: net, gross: gross, refunds: refunds, chargebacks: chargebacks};
      state.mrr = mrrMine; state.rates = ratesMine; state.churn = churn;
      status.textContent = (product ? "Product " + product : "All products") + ", " + from + " to " + to +
        "; charts in " + currency + ".";
      document.body.setAttribute("data-rendered", "true");
    }).catch(function (e) {
      if (e.message === "unauthorized") showLogin("The token was refused; enter it again.");
      else status.textContent = "Could not load: " + e.message;
    });
  }

  function preset(name) {
    var to = new Date(), from;
    var n = {"7d": 6, "30d": 29, "90d": 89}[name];
    if (n !== undefined) from = new Date(to.getTime() - n * DAY);
    else { from = new Date(to.getTime()); from.setUTCFullYear(to.getUTCFullYear() - 1); from = new Date(from.getTime() + DAY); }
    $("from").value = iso(from); $("to").value = iso(to);
    Array.prototype.forEach.call(document.querySelectorAll("[data-range]"), function (b) {
      b.classList.toggle("active", b.getAttribute("data-range") === name);
    });
  }

  var params = new URLSearchParams(location.search);
  preset(params.get("range") || "90d");
  if (params.get("from")) $("from").value = params.get("from");
  if (params.get("to")) $("to").value = params.get("to");
  if (params.get("product")) { fillSelect($("product"), [params.get("product")], params.get("product"), "all products"); }
  Array.prototype.forEach.call(document.querySelectorAll("[data-range]"), function (b) {
    b.addEventListener("click", function () { preset(b.getAttribute("data-range")); load(); });
  });
  ["product", "currency", "report"].forEach(function (id) { $(id).addEventListener("change", load); });
  $("controls").addEventListener("submit", function (e) { e.preventDefault(); load(); });
  $("forget").addEventListener("click", function () { sessionStorage.removeItem(KEY); showLogin(); });
  $("login").addEventListener("submit", function (e) {
    e.preventDefault();
    sessionStorage.setItem(KEY, $("token").value);
    load();
  });
  window.addEventListener("resize", function () { Object.keys(charts).forEach(function (k) { charts[k].resize(); }); });
  load();
})();
