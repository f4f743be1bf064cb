
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var COLORS = ["#2f6fdf", "#e0662b", "#2a9d5b", "#9b4dca", "#c2185b", "#00838f", "#7d6b00", "#5d4037"];
  var SEVERITY = {critical: "#c62828", warning: "#ef6c00", info: "#1565c0"};
  var W = 560, H = 270, M = {l: 62, r: 14, t: 22, b: 34};

  function el(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    for (var k in attrs) node.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(node);
    return node;
  }
  function h(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function fmt(v) {
    if (v === 0) return "0";
    var a = Math.abs(v);
    if (a >= 1e5 || a < 1e-3) return v.toExponential(1);
    return String(Math.round(v * 1000) / 1000);
  }
  function fmtX(v, kind) {
    if (kind === "time") return new Date(v).toISOString().substr(11, 8);
    return fmt(v);
  }
  function ticks(lo, hi, n) {
    if (hi <= lo) return [lo];
    var step = Math.pow(10, Math.floor(Math.log10((hi - lo) / n)));
    var err = (hi - lo) / n / step;
    step *= err >= 7.5 ? 10 : err >= 3.5 ? 5 : err >= 1.5 ? 2 : 1;
    var out = [];
    // a step below the values' resolution never advances v (0.9 + 1e-17 is 0.9): at most 2n ticks
    for (var v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9 && out.length <= 2 * n; v += step) out.push(v);
    return out;
  }
  function extent(values) {
    var lo = Infinity, hi = -Infinity;
    values.forEach(function (v) { if (v !== null && isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); } });
    if (lo === Infinity) return null;
    // a constant metric (0.9 every step; its rollup's mean 0.9000000000000002): its span is rounding
    if (hi - lo <= Math.abs(hi) * 1e-9) { lo -= Math.abs(lo) * 0.1 || 1; hi += Math.abs(hi) * 0.1 || 1; }
    return [lo, hi];
  }

  function drawChart(chart, parent) {
    var box = h("div", "chart");
    box.id = "chart-" + chart.id;
    box.appendChild(h("h3", "", chart.title));
    if (chart.note) box.appendChild(h("p", "note", chart.note));
    parent.appendChild(box);
    var live = chart.series.filter(function (s) {
      return s.points.some(function (p) { return p[1] !== null; }) || s.nonfinite.length;
    });
    var xs = [], ys = [];
    live.forEach(function (s) {
      s.points.forEach(function (p) { xs.push(p[0]); if (p[1] !== null && (!chart.log_y || p[1] > 0)) ys.push(p[1]); });
      s.band.forEach(function (b) { ys.push(b[1]); ys.push(b[2]); });
      s.nonfinite.forEach(function (p) { xs.push(p[0]); });
    });
    chart.markers.forEach(function (m) { xs.push(m.x); });
    // y_limits: the range where the runs compare; a point above it is drawn as an arrow, not to scale.
    var lim = chart.y_limits, ceil = lim ? lim[1] : Infinity;
    var xr = extent(xs), yr = extent(lim || (chart.log_y ? ys.filter(function (v) { return v > 0; }) : ys));
    box.setAttribute("data-series", String(live.length));
    if (!xr || !yr || !live.length) { box.appendChild(h("p", "empty", "no data")); return 0; }
    if (!chart.log_y && chart.steps) yr[0] = Math.min(0, yr[0]);
    var ly = chart.log_y;
    var y0 = ly ? Math.log10(yr[0]) : yr[0], y1 = ly ? Math.log10(yr[1]) : yr[1];
    var pad = (y1 - y0) * 0.05; y0 -= ly ? 0 : (chart.steps ? 0 : pad); y1 += pad;
    function X(v) { return M.l + (v - xr[0]) / (xr[1] - xr[0] || 1) * (W - M.l - M.r); }
    function Y(v) { var t = ly ? Math.log10(v) : v; return H - M.b - (t - y0) / (y1 - y0 || 1) * (H - M.t - M.b); }
    function drawn(p) { return p[1] !== null && (!ly || p[1] > 0) && p[1] <= ceil; }
    var clipped = 0;
    var svg = el("svg", {viewBox: "0 0 " + W + " " + H, width: "100%", role: "img"}, box);
    var grid = el("g", {stroke: "#e6e9ee"}, svg);
    var yt = ly ? ticks(Math.ceil(y0), Math.floor(y1), 5).map(function (e) { return Math.pow(10, e); })
                : ticks(y0, y1, 5);
    yt.forEach(function (v) {
      var y = Y(v);
      el("line", {x1: M.l, x2: W - M.r, y1: y, y2: y}, grid);
      el("text", {x: M.l - 6, y: y + 4, "text-anchor": "end"}, svg).textContent = fmt(v);
    });
    ticks(xr[0], xr[1], 6).forEach(function (v) {
      var x = X(v);
      el("line", {x1: x, x2: x, y1: M.t, y2: H - M.b}, grid);
      el("text", {x: x, y: H - M.b + 15, "text-anchor": "middle"}, svg).textContent = fmtX(v, chart.x_kind);
    });
    el("text", {x: W - M.r, y: H - 4, "text-anchor": "end"}, svg).textContent =
      chart.x_kind === "step" ? "step" : chart.x_kind === "time" ? "time (UTC)" : "value";
    el("text", {x: 8, y: 12}, svg).textContent = chart.y_label + (ly ? " (log)" : "");
    el("rect", {x: M.l, y: M.t, width: W - M.l - M.r, height: H - M.t - M.b, fill: "none", stroke: "#c9ced6"}, svg);
    var legend = h("div", "legend");
    live.forEach(function (s, i) {
      var color = COLORS[i % COLORS.length];
      if (s.band.length) {
        var floor = ly ? yr[0] : -Infinity;
        var cut = function (v) { return Y(Math.min(Math.max(v, floor), ceil)); };
        var up = s.band.map(function (b) { return X(b[0]) + "," + cut(b[2]); });
        var down = s.band.slice().reverse().map(function (b) { return X(b[0]) + "," + cut(b[1]); });
        el("polygon", {points: up.concat(down).join(" "), fill: color, "fill-opacity": 0.15, stroke: "none"}, svg);
      }
      var d = "", pen = false, prevY = null;
      s.points.forEach(function (p) {
        if (!drawn(p)) { pen = false; return; }
        var x = X(p[0]), y = Y(p[1]);
        if (chart.steps && pen) d += "H" + x + "V" + y;
        else d += (pen ? "L" : "M") + x + "," + y;
        pen = true; prevY = y;
      });
      var path = el("path", {d: d, fill: "none", stroke: color, "stroke-width": 1.6, "class": "series"}, svg);
      path.setAttribute("data-name", s.name);
      if (s.points.length < 60 && !chart.steps) {
        s.points.forEach(function (p) {
          if (!drawn(p)) return;
          var dot = el("circle", {cx: X(p[0]), cy: Y(p[1]), r: 2.2, fill: color}, svg);
          el("title", {}, dot).textContent = s.name + ": " + fmtX(p[0], chart.x_kind) + " -> " + fmt(p[1]);
        });
      }
      s.nonfinite.forEach(function (p) {
        var x = X(p[0]);
        var top = M.t + 1;
        var shape = "M" + (x - 5) + "," + top + "L" + (x + 5) + "," + top + "L" + x + "," + (top + 8) + "Z";
        var tri = el("path", {d: shape,
          fill: "#c62828", "class": "nonfinite"}, svg);
        el("title", {}, tri).textContent = s.name + ": " + p[1] + " at " + fmtX(p[0], chart.x_kind);
      });
      var off = drawOffAxis(svg, s, color, ceil, X, chart.x_kind);
      clipped += off;
      var item = h("span", "", s.name + (s.nonfinite.length ? " (" + s.nonfinite.length + " NaN/Inf)" : "") +
        (off ? " (" + off + " above the axis)" : ""));
      var swatch = h("i"); swatch.style.background = color; item.insertBefore(swatch, item.firstChild);
      legend.appendChild(item);
    });
    chart.markers.forEach(function (m) {
      var x = X(m.x), color = SEVERITY[m.severity] || "#c62828";
      var line = el("line", {x1: x, x2: x, y1: M.t, y2: H - M.b, stroke: color, "stroke-width": 1.4,
        "stroke-dasharray": "4 3", "class": "marker"}, svg);
      el("title", {}, line).textContent = m.label;
      if (m.y !== null && m.y !== undefined && (!ly || m.y > 0)) {
        var ring = el("circle", {cx: x, cy: Y(Math.min(m.y, ceil)), r: 5, fill: "none", stroke: color,
          "stroke-width": 2, "class": "flagged"}, svg);
        el("title", {}, ring).textContent = m.label + ": " + fmt(m.y);
      }
    });
    if (chart.markers.length) {
      var mk = h("span", "", chart.markers.length + " flagged");
      var sw = h("i"); sw.style.background = "#c62828"; mk.insertBefore(sw, mk.firstChild);
      legend.appendChild(mk);
    }
    box.appendChild(legend);
    box.setAttribute("data-clipped", String(clipped));
    return live.length;
  }

  // Each value of s above the axis: an arrow on the top edge in the series' colour, its true value in the title.
  function drawOffAxis(svg, s, color, ceil, X, kind) {
    var off = s.points.filter(function (p) { return p[1] !== null && p[1] > ceil; });
    off.forEach(function (p) {
      var x = X(p[0]), tip = M.t + 1;
      var shape = "M" + (x - 4) + "," + (tip + 8) + "L" + x + "," + tip + "L" + (x + 4) + "," + (tip + 8) + "Z";
      var arrow = el("path", {d: shape, fill: color, "class": "clipped", "data-x": p[0], "data-value": p[1]}, svg);
      el("title", {}, arrow).textContent =
        s.name + ": " + fmtX(p[0], kind) + " -> " + p[1].toPrecision(4) + " (above the axis)";
    });
    return off.length;
  }

  var data = JSON.parse(document.getElementById("report-data").textContent);
  var root = document.getElementById("sections");
  var charts = 0, series = 0;
  data.sections.forEach(function (section) {
    var node = h("section"); node.id = section.id;
    node.appendChild(h("h2", "", section.title));
    node.appendChild(h("p", "intro", section.intro));
    var grid = h("div", "grid");
    node.appendChild(grid);
    root.appendChild(node);
    if (!section.charts.length) { grid.appendChild(h("p", "empty", section.empty)); }
    section.charts.forEach(function (chart) {
      try {
        series += drawChart(chart, grid);
        charts += 1;
      } catch (err) {
        window.__reportErrors.push(chart.id + ": " + err);
      }
    });
    node.setAttribute("data-charts", String(section.charts.length));
  });
  document.body.setAttribute("data-charts", String(charts));
  document.body.setAttribute("data-series", String(series));
  document.body.setAttribute("data-errors", String(window.__reportErrors.length));
  document.body.setAttribute("data-error-messages", window.__reportErrors.join(" | "));
  document.body.setAttribute("data-rendered", "1");
})();
