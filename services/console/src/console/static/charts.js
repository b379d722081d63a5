/* What the Revenue and Learning pages share: the query the page was rendered with, a JSON getter for the
 * console's own data routes (the session cookie goes along; the admin token never comes here), formats,
 * every day / month of a range, and ECharts set up for the console's strict CSP. */
(function () {
  "use strict";
  var DAY = 864e5;
  var charts = {};
  var $ = function (id) { return document.getElementById(id); };

  function iso(d) { return d.toISOString().slice(0, 10); }

  /* The page's query, as the server rendered it into the form (presets and dates are links / a GET form). */
  function query() {
    var from = $("from").value, to = $("to").value, product = $("product").value;
    return {from: from, to: to, product: product || null,
      qs: "from=" + from + "&to=" + to + (product ? "&product=" + encodeURIComponent(product) : "")};
  }
  function getJSON(url) {
    return fetch(url, {headers: {Accept: "application/json"}, credentials: "same-origin"}).then(function (r) {
      if (r.status === 401) throw new Error("your session ended: sign in again");
      if (!r.ok) return r.json().catch(function () { return {}; }).then(function (b) { throw new Error(b.message || r.statusText); });
      return r.json();
    });
  }
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
  /* The first day of every month the range touches, as YYYY-MM-01. */
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
  /* [label, value] for every label; a label without a row is 0. */
  function series(labels, rows, keyField, field) {
    var byKey = {};
    rows.forEach(function (r) { byKey[r[keyField]] = Number(r[field] || 0); });
    return labels.map(function (k) { return [k, byKey[k] || 0]; });
  }

  /* SVG renderer and plain-text tooltips: ECharts' HTML tooltips need inline styles, which the console's
   * Content-Security-Policy (style-src 'self') does not allow. */
  var TOOLTIP = {trigger: "axis", renderMode: "richText"};
  function chart(id) {
    if (!charts[id]) charts[id] = echarts.init($(id), null, {renderer: "svg"});
    return charts[id];
  }
  function timeChart(id, unit, list) {
    chart(id).setOption({
      animation: false,
      tooltip: TOOLTIP,
      legend: {top: 0},
      grid: {left: 70, right: 20, top: 30, bottom: 30},
      xAxis: {type: "time", axisLabel: {hideOverlap: true}},  // month names and day numbers never overprint
      yAxis: {type: "value", name: unit, axisLabel: {formatter: function (v) { return v.toLocaleString("en"); }}},
      series: list
    }, true);
  }
  function categoryChart(id, labels, list, yAxis) {
    chart(id).setOption({
      animation: false,
      tooltip: TOOLTIP,
      legend: {top: 0, type: "scroll"},
      grid: {left: 70, right: 50, top: 50, bottom: 30},
      xAxis: {type: "category", data: labels},
      yAxis: yAxis,
      series: list
    }, true);
  }
  function monthChart(id, monthLabels, list, yAxis) {
    categoryChart(id, monthLabels.map(function (m) { return m.slice(0, 7); }), list, yAxis);
  }

  function cell(row, text, numeric) {
    var td = document.createElement("td");
    td.textContent = text;
    if (numeric) td.className = "num";
    row.appendChild(td);
  }
  function status(text) { $("status").textContent = text; }
  function rendering() { document.body.removeAttribute("data-rendered"); }
  function rendered() { document.body.setAttribute("data-rendered", "true"); }
  function failed(e) { status("Could not load: " + e.message); document.body.setAttribute("data-rendered", "error"); }

  /* A changed select shows the new view at once (the form is a plain GET). */
  Array.prototype.forEach.call(document.querySelectorAll("[data-autosubmit]"), function (el) {
    el.addEventListener("change", function () { el.form.submit(); });
  });
  window.addEventListener("resize", function () { Object.keys(charts).forEach(function (k) { charts[k].resize(); }); });

  window.CourseBridgeCharts = {
    $: $, query: query, getJSON: getJSON, money: money, pct: pct, days: days, months: months, series: series,
    chart: chart, timeChart: timeChart, monthChart: monthChart, categoryChart: categoryChart, cell: cell,
    status: status, rendering: rendering, rendered: rendered, failed: failed
  };
})();
