// Drift charts with uPlot: per detector, the statistic against its threshold over time (alarm
// points marked), then the estimated accuracy. Data comes from the page's data-series
// attribute (no inline script: the CSP forbids it).
(function () {
  "use strict";
  const host = document.getElementById("drift-charts");
  if (!host || !window.uPlot) return;
  const data = JSON.parse(host.dataset.series);
  const width = Math.min(host.clientWidth || 800, 900);

  function chart(title, series, values) {
    const box = document.createElement("div");
    box.className = "chart";
    box.setAttribute("role", "img");
    box.setAttribute("aria-label", title);
    host.appendChild(box);
    new window.uPlot({ title: title, width: width, height: 220, series: series }, values, box);
  }

  for (const [name, [times, stats, thresholds, alarms]] of Object.entries(data.detectors)) {
    const marks = stats.map((s, i) => (alarms[i] ? s : null));
    chart(name + ": statistic vs threshold", [
      {},
      { label: "statistic", stroke: "#1f6feb" },
      { label: "threshold", stroke: "#b3261e", dash: [6, 4] },
      { label: "alarm", stroke: "#b3261e", width: 0, points: { show: true, size: 8, fill: "#b3261e" } },
    ], [times, stats, thresholds, marks]);
  }
  const [times, accuracy] = data.accuracy;
  chart("estimated accuracy", [{}, { label: "estimated accuracy", stroke: "#bf8700" }], [times, accuracy]);
})();
