/* The Revenue page: KPI tiles per currency and ECharts charts in one currency, from /revenue/data (which
 * the console answers from analytics' API). Amounts of different currencies are never added; every figure
 * carries its currency code. */
(function () {
  "use strict";
  var C = window.CourseBridgeCharts, $ = C.$, money = C.money, pct = C.pct, series = C.series;
  var state = {};
  window.coursebridgeRevenue = state;  // what was drawn, for people and tests to inspect

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
    if (!summary.currencies.length) {
      var none = document.createElement("p"); none.className = "muted"; none.id = "no-sales";
      none.textContent = "No payment in this range" + (summary.product ? " for product " + summary.product : "") + ".";
      box.appendChild(none);
    }
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

  function draw(res, q) {
    var daily = res.daily, summary = res.summary, mrr = res.mrr, churn = res.churn, rates = res.rates;
    // Charts show one currency: the chosen one, else the one with the most charges in the range.
    var busiest = summary.currencies.slice().sort(function (a, b) { return b.purchases - a.purchases; })[0];
    var chosen = $("currency").value;
    var currency = chosen || (busiest ? busiest.currency : ($("currency").options[1] || {}).value || "");
    renderKpis(summary);

    var labels = C.days(q.from, q.to);
    var mine = daily.filter(function (r) { return r.currency === currency; });
    var net = series(labels, mine, "date", "net");
    var gross = series(labels, mine, "date", "gross");
    var refunds = series(labels, mine, "date", "refunds");
    var chargebacks = series(labels, mine, "date", "chargebacks");
    Array.prototype.forEach.call(document.querySelectorAll("h2 .unit"), function (el) { el.textContent = currency ? "(" + currency + ")" : ""; });
    C.timeChart("chart-net", currency, [{name: "net " + currency, type: "line", showSymbol: false, data: net}]);
    C.timeChart("chart-gross", currency, [
      {name: "gross", type: "bar", data: gross},
      {name: "refunds", type: "bar", data: refunds},
      {name: "chargebacks", type: "bar", data: chargebacks}]);

    var monthLabels = C.months(q.from, q.to);
    var mrrMine = mrr.filter(function (r) { return r.currency === currency; });
    var values = function (rows, field) { return series(monthLabels, rows, "month", field).map(function (p) { return p[1]; }); };
    C.monthChart("chart-mrr", monthLabels, [{name: "MRR " + currency, type: "bar", data: values(mrrMine, "mrr")}],
      {type: "value", name: currency});
    C.monthChart("chart-churn", monthLabels, [
      {name: "active subscribers", type: "bar", data: values(mrrMine, "active_subscribers")},
      {name: "new subscribers", type: "bar", data: values(mrrMine, "new_subscribers")},
      {name: "churn %", type: "line", yAxisIndex: 1, symbol: "diamond", symbolSize: 8,
        data: monthLabels.map(function (m) { var r = churn.filter(function (c) { return c.month === m; })[0]; return r && r.churn_rate !== null && !r.in_progress ? +(100 * r.churn_rate).toFixed(2) : null; })}],
      [{type: "value", name: "subscribers"}, {type: "value", name: "%", min: 0}]);
    var ratesMine = rates.filter(function (r) { return r.currency === currency; });
    C.monthChart("chart-rates", monthLabels, [
      {name: "refund rate %", type: "bar", data: values(ratesMine, "refund_rate").map(function (v) { return +(100 * v).toFixed(2); })},
      {name: "chargeback rate %", type: "bar", data: values(ratesMine, "chargeback_rate").map(function (v) { return +(100 * v).toFixed(2); })}],
      {type: "value", name: "%"});

    state.currency = currency; state.from = q.from; state.to = q.to; state.product = q.product;
    state.daily = daily; state.summary = summary; state.labels = labels; state.months = monthLabels;
    state.series = {net: net, gross: gross, refunds: refunds, chargebacks: chargebacks};
    state.mrr = mrrMine; state.rates = ratesMine; state.churn = churn;
    C.status((q.product ? "Product " + q.product : "All products") + ", " + q.from + " to " + q.to +
      (currency ? "; charts in " + currency + "." : "."));
  }

  function load() {
    var q = C.query(), report = $("report").value;
    C.status("Loading…");
    C.rendering();
    C.getJSON("/revenue/data?" + q.qs + (report ? "&report=" + encodeURIComponent(report) : "")).then(function (res) {
      draw(res, q);
      C.rendered();
    }).catch(C.failed);
  }
  load();
})();
