(function () {
  "use strict";
  var KEY = "coursebridge.analytics.token";
  var status = document.getElementById("status");
  function token() { return sessionStorage.getItem(KEY); }
  function showLogin(message) {
    document.getElementById("login").hidden = false;
    status.textContent = message || "Enter the admin token to see the dashboard.";
  }
  function getJSON(url) {
    return fetch(url, {headers: {Authorization: "Bearer " + token()}}).then(function (r) {
      if (r.status === 401) { sessionStorage.removeItem(KEY); throw new Error("unauthorized"); }
      if (!r.ok) return r.json().then(function (b) { throw new Error(b.message || r.statusText); });
      return r.json();
    });
  }
  function sumBy(rows, keyField, valueFields) {
    var out = {}, order = [];
    rows.forEach(function (row) {
      var k = row[keyField];
      if (!(k in out)) { out[k] = {}; order.push(k); valueFields.forEach(function (f) { out[k][f] = 0; }); }
      valueFields.forEach(function (f) { out[k][f] += Number(row[f] || 0); });
    });
    order.sort();
    return {keys: order, values: out};
  }
  function col(agg, field) { return agg.keys.map(function (k) { return Math.round(agg.values[k][field] * 100) / 100; }); }
  function load() {
    if (!token()) { showLogin(); return; }
    document.getElementById("login").hidden = true;
    var from = document.getElementById("from").value, to = document.getElementById("to").value;
    var currency = document.getElementById("currency").value;
    var q = "/revenue/daily?from=" + from + "&to=" + to + (currency ? "&currency=" + currency : "");
    status.textContent = "Loading…";
    Promise.all([getJSON(q), getJSON("/views/mrr_monthly"), getJSON("/views/churn_monthly"),
                 getJSON("/views/refund_rates_monthly")]).then(function (res) {
      var daily = sumBy(res[0], "date", ["gross", "refunds", "chargebacks", "net", "purchases"]);
      MiniCharts.render(document.getElementById("chart-net"),
        {labels: daily.keys, series: [{name: "net", values: col(daily, "net"), type: "line"}]});
      MiniCharts.render(document.getElementById("chart-gross"), {labels: daily.keys, series: [
        {name: "gross", values: col(daily, "gross"), type: "bar"},
        {name: "refunds", values: col(daily, "refunds"), type: "bar"},
        {name: "chargebacks", values: col(daily, "chargebacks"), type: "bar"}]});
      var mrrRows = currency ? res[1].filter(function (r) { return r.currency === currency; }) : res[1];
      var mrr = sumBy(mrrRows, "month", ["mrr", "active_subscribers"]);
      MiniCharts.render(document.getElementById("chart-mrr"),
        {labels: mrr.keys, series: [{name: "MRR" + (currency ? " " + currency : " (all currencies)"), values: col(mrr, "mrr"), type: "bar"}]});
      var churn = sumBy(res[2], "month", ["subscribers_at_start", "churned"]);
      MiniCharts.render(document.getElementById("chart-churn"), {labels: churn.keys, series: [
        {name: "subscribers at start", values: col(churn, "subscribers_at_start"), type: "bar"},
        {name: "churned", values: col(churn, "churned"), type: "bar"}]});
      var rates = sumBy(res[3], "month", ["purchases", "refund_count", "chargeback_count"]);
      MiniCharts.render(document.getElementById("chart-rates"), {labels: rates.keys, series: [
        {name: "refund rate %", values: rates.keys.map(function (k) { var v = rates.values[k]; return v.purchases ? Math.round(1e4 * v.refund_count / v.purchases) / 100 : 0; }), type: "line"},
        {name: "chargeback rate %", values: rates.keys.map(function (k) { var v = rates.values[k]; return v.purchases ? Math.round(1e4 * v.chargeback_count / v.purchases) / 100 : 0; }), type: "line"}]});
      status.textContent = res[0].length + " daily rows, " + from + " to " + to + ".";
      document.body.setAttribute("data-rendered", "true");
    }).catch(function (e) {
      if (e.message === "unauthorized") showLogin("The token was refused; enter it again.");
      else status.textContent = "Could not load: " + e.message;
    });
  }
  var today = new Date(), past = new Date(today.getTime() - 89 * 864e5);
  var params = new URLSearchParams(location.search);
  document.getElementById("from").value = params.get("from") || past.toISOString().slice(0, 10);
  document.getElementById("to").value = params.get("to") || today.toISOString().slice(0, 10);
  document.getElementById("controls").addEventListener("submit", function (e) { e.preventDefault(); load(); });
  document.getElementById("forget").addEventListener("click", function () { sessionStorage.removeItem(KEY); showLogin(); });
  document.getElementById("login").addEventListener("submit", function (e) {
    e.preventDefault();
    sessionStorage.setItem(KEY, document.getElementById("token").value);
    load();
  });
  load();
})();
