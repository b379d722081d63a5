/* Tiny dependency-free SVG charts: line and bar series over a shared x axis. */
(function (global) {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var COLORS = ["#2f80ed", "#eb5757", "#f2994a", "#27ae60", "#9b51e0"];
  function el(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }
  function fmt(v) {
    var a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (a >= 1e3) return (v / 1e3).toFixed(1) + "k";
    return a < 1 && a > 0 ? v.toFixed(2) : String(Math.round(v * 100) / 100);
  }
  /* spec: {labels: [...], series: [{name, values, type: "line"|"bar"}]} */
  function render(container, spec) {
    container.innerHTML = "";
    var W = 600, H = 240, L = 48, R = 10, T = 10, B = 28;
    var svg = el("svg", {viewBox: "0 0 " + W + " " + H, role: "img", "data-points": spec.labels.length}, container);
    var all = [0];
    spec.series.forEach(function (s) { all = all.concat(s.values); });
    var max = Math.max.apply(null, all), min = Math.min.apply(null, all);
    if (max === min) max = min + 1;
    var n = Math.max(spec.labels.length, 1), pw = W - L - R, ph = H - T - B;
    var banded = spec.series.some(function (s) { return s.type === "bar"; });
    function x(i) { return banded ? L + ((i + 0.5) * pw) / n : L + (n === 1 ? pw / 2 : (i * pw) / (n - 1)); }
    function y(v) { return T + ph - ((v - min) / (max - min)) * ph; }
    el("line", {x1: L, y1: y(0), x2: W - R, y2: y(0), "class": "axis"}, svg);
    el("line", {x1: L, y1: T, x2: L, y2: T + ph, "class": "axis"}, svg);
    [min, (min + max) / 2, max].forEach(function (v) {
      el("text", {x: L - 4, y: y(v) + 3, "text-anchor": "end"}, svg).textContent = fmt(v);
    });
    var step = Math.max(1, Math.ceil(n / 8));
    spec.labels.forEach(function (label, i) {
      if (i % step === 0) el("text", {x: x(i), y: H - 8, "text-anchor": "middle"}, svg).textContent = label;
    });
    var bars = spec.series.filter(function (s) { return s.type === "bar"; });
    var bw = Math.max(1, (pw / n) * 0.8 / Math.max(bars.length, 1));
    spec.series.forEach(function (s, k) {
      var color = COLORS[k % COLORS.length];
      if (s.type === "bar") {
        var b = bars.indexOf(s);
        s.values.forEach(function (v, i) {
          var top = y(Math.max(v, 0)), h = Math.abs(y(v) - y(0));
          el("rect", {x: x(i) - (bw * bars.length) / 2 + b * bw, y: top, width: bw, height: Math.max(h, 0.5),
            fill: color, "class": "bar", "data-value": v}, svg);
        });
      } else {
        var d = s.values.map(function (v, i) { return (i ? "L" : "M") + x(i).toFixed(1) + " " + y(v).toFixed(1); });
        el("path", {d: d.join(" "), fill: "none", stroke: color, "stroke-width": 2, "class": "series"}, svg);
        s.values.forEach(function (v, i) {
          var c = el("circle", {cx: x(i), cy: y(v), r: n > 60 ? 1.5 : 3, fill: color, "class": "point", "data-value": v}, svg);
          el("title", {}, c).textContent = spec.labels[i] + " " + s.name + ": " + v;
        });
      }
    });
    var legend = document.createElement("div");
    legend.className = "legend";
    spec.series.forEach(function (s, k) {
      var item = document.createElement("span");
      item.style.setProperty("--c", COLORS[k % COLORS.length]);
      item.textContent = s.name;
      legend.appendChild(item);
    });
    container.appendChild(legend);
  }
  global.MiniCharts = {render: render};
})(window);
