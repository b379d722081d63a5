/* The Learning page: started and completion rates per product and cohort month, time to first access,
 * and refund rate by progress, from /learning/data (which the console answers from analytics' API).
 * With no learning activity read yet (or an analytics without the learning views) it says so plainly. */
(function () {
  "use strict";
  var C = window.CourseBridgeCharts, $ = C.$, pct = C.pct;
  var BUCKETS = ["never_started", "started", "completed"];
  var BUCKET_WORDS = {never_started: "never started", started: "started", completed: "completed"};
  // One colour per product across the three charts (ECharts' own palette).
  var PALETTE = ["#5470c6", "#91cc75", "#fac858", "#ee6666", "#73c0de", "#3ba272", "#fc8452", "#9a60b4", "#ea7ccc"];
  var known = [];
  function colorOf(product) { return PALETTE[Math.max(0, known.indexOf(product)) % PALETTE.length]; }
  var state = {};
  window.coursebridgeLearning = state;  // what was drawn, for people and tests to inspect

  function percent(v) { return v === null || v === undefined ? null : +(100 * v).toFixed(2); }
  function hours(v) { return v === null || v === undefined ? "–" : Number(v).toFixed(1) + " h"; }
  function products(rows) {
    var seen = {};
    rows.forEach(function (r) { seen[r.product_id] = true; });
    return Object.keys(seen).sort();
  }
  /* One value per month of the range for one product; a month without a cohort is a gap (null), not 0. */
  function perMonth(monthLabels, rows, product, field, map) {
    var byMonth = {};
    rows.forEach(function (r) { if (r.product_id === product) byMonth[r.cohort_month] = r[field]; });
    return monthLabels.map(function (m) { var v = byMonth[m]; return v === undefined || v === null ? null : map(v); });
  }

  function drawCohorts(rows, monthLabels) {
    var list = [];
    products(rows).forEach(function (p) {
      var color = colorOf(p);
      list.push({name: p + " completed %", type: "bar", color: color,
        data: perMonth(monthLabels, rows, p, "completion_rate", percent)});
      list.push({name: p + " started %", type: "line", symbol: "circle", color: color, lineStyle: {type: "dashed"},
        data: perMonth(monthLabels, rows, p, "started_rate", percent)});
    });
    C.monthChart("chart-completion", monthLabels, list, {type: "value", name: "%", min: 0, max: 100});
    C.monthChart("chart-first-access", monthLabels, products(rows).map(function (p) {
      return {name: p, type: "bar", color: colorOf(p), data: perMonth(monthLabels, rows, p, "first_access_hours_median", function (v) { return +Number(v).toFixed(1); })};
    }), {type: "value", name: "hours", min: 0});
    var body = $("cohorts").tBodies[0];
    body.textContent = "";
    rows.forEach(function (r) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-product", r.product_id);
      tr.setAttribute("data-cohort", r.cohort_month.slice(0, 7));
      C.cell(tr, r.product_id); C.cell(tr, r.cohort_month.slice(0, 7));
      C.cell(tr, String(r.buyers), true); C.cell(tr, String(r.started), true); C.cell(tr, String(r.completed), true);
      C.cell(tr, pct(r.started_rate), true); C.cell(tr, pct(r.completion_rate), true);
      C.cell(tr, hours(r.first_access_hours_median), true);
      body.appendChild(tr);
    });
  }

  function drawRefunds(rows) {
    C.categoryChart("chart-refunds", BUCKETS.map(function (b) { return BUCKET_WORDS[b]; }), products(rows).map(function (p) {
      return {name: p, type: "bar", color: colorOf(p), data: BUCKETS.map(function (b) {
        var r = rows.filter(function (x) { return x.product_id === p && x.bucket === b; })[0];
        return r ? percent(r.refund_rate) : null;
      })};
    }), {type: "value", name: "refund %", min: 0});
    var body = $("refunds").tBodies[0];
    body.textContent = "";
    rows.forEach(function (r) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-product", r.product_id);
      tr.setAttribute("data-bucket", r.bucket);
      C.cell(tr, r.product_id); C.cell(tr, BUCKET_WORDS[r.bucket] || r.bucket);
      C.cell(tr, String(r.buyers), true); C.cell(tr, String(r.refunded), true); C.cell(tr, pct(r.refund_rate), true);
      body.appendChild(tr);
    });
  }

  function draw(res, q) {
    var empty = !res.available || res.activity.events === 0;
    $("learning-empty").hidden = !empty;
    $("learning-unserved").hidden = res.available;
    $("learning").hidden = empty;
    state.from = q.from; state.to = q.to; state.product = q.product; state.available = res.available;
    state.empty = empty;
    if (empty) {
      state.cohorts = []; state.refunds = []; state.months = [];
      C.status((q.product ? "Product " + q.product : "All products") + ", " + q.from + " to " + q.to + ": no learning activity yet.");
      return;
    }
    var monthLabels = C.months(q.from, q.to);
    known = products(res.cohorts.concat(res.refunds));
    // The charts are drawn while visible, so ECharts measures their real size.
    drawCohorts(res.cohorts, monthLabels);
    drawRefunds(res.refunds);
    $("activity").textContent = res.activity.events + " learning events read from TalentLMS" +
      (res.activity.last_occurred_at ? ", the latest from " + res.activity.last_occurred_at.replace("T", " ").slice(0, 16) + " UTC" : "") + ".";
    state.months = monthLabels; state.cohorts = res.cohorts; state.refunds = res.refunds; state.activity = res.activity;
    C.status((q.product ? "Product " + q.product : "All products") + ", cohort months " + monthLabels[0].slice(0, 7) +
      " to " + monthLabels[monthLabels.length - 1].slice(0, 7) + " (the months " + q.from + " to " + q.to + " touch).");
  }

  function load() {
    var q = C.query();
    C.status("Loading…");
    C.rendering();
    C.getJSON("/learning/data?" + q.qs).then(function (res) { draw(res, q); C.rendered(); }).catch(C.failed);
  }
  load();
})();
