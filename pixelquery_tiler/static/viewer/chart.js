/* pixelquery-tiler viewer: time-series charts (uPlot) over the analysis endpoints.
 *
 * Click the map: the pixel under the click in every observation, over all dates, of what the map currently renders
 * (its bands, or its expression such as NDVI), from collections/{cid}/timeseries/point/{lon},{lat}.
 * "Mean over a rectangle": drag a rectangle on the map; the chart shows the mean per date from
 * collections/{cid}/timeseries/statistics. The date selected on the time slider is highlighted.
 *
 * Needs window.pqViewer (viewer.js) and window.uPlot (static/viewer/uplot, a pinned npm build). State for scripted
 * checks: window.pqChart and <body data-chart> = "loading" | "ready" | "failed".
 */
(function () {
  'use strict';

  var viewer = window.pqViewer;
  if (!viewer || !window.uPlot) return;
  var map = viewer.map;
  var $ = function (id) { return document.getElementById(id); };
  var COLORS = ['#0b57d0', '#d93025', '#188038', '#f29900', '#9334e6', '#12b5cb'];

  var chart = { plot: null, series: [], names: [], times: [], kind: null, marker: null, request: 0 };
  window.pqChart = chart;

  // --------------------------------------------------------------------------- panel
  var panel = document.createElement('section');
  panel.id = 'chart-panel';
  panel.hidden = true;
  panel.innerHTML =
    '<header><strong id="chart-title">Time series</strong>' +
    '<button type="button" id="chart-close" aria-label="close chart">×</button></header>' +
    '<div id="chart-plot"></div><div id="chart-note" class="muted"></div>';
  document.body.appendChild(panel);
  $('chart-close').addEventListener('click', close);

  var rectButton = document.createElement('button');
  rectButton.type = 'button';
  rectButton.id = 'chart-rect';
  rectButton.textContent = 'Mean over a rectangle';
  rectButton.title = 'drag a rectangle on the map: mean of the current rendering per date';
  var tools = document.createElement('section');
  tools.innerHTML = '<h2>Time series</h2><div class="muted">click the map for the series at a point</div>';
  tools.appendChild(rectButton);
  var statusEl = $('status');
  statusEl.parentNode.insertBefore(tools, statusEl);

  function close() {
    panel.hidden = true;
    if (chart.marker) { map.removeLayer(chart.marker); chart.marker = null; }
    delete document.body.dataset.chart;
  }

  // --------------------------------------------------------------------------- requests
  function viewParams() {
    var v = viewer.chartView();
    var q = new URLSearchParams();
    v.render.forEach(function (kv) { if (kv[0] === 'bands' || kv[0] === 'expression') q.append(kv[0], kv[1]); });
    if (v.snapshotId) q.append('snapshot_id', v.snapshotId);
    return { cid: v.collection, query: q.toString() };
  }

  function fetchJSON(url, init) {
    return fetch(url, init).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (body) {
        if (!r.ok) throw new Error((body && body.detail) || ('HTTP ' + r.status));
        return body;
      });
    });
  }

  function start(title, marker) {
    if (chart.marker) map.removeLayer(chart.marker);
    chart.marker = marker.addTo(map);
    panel.hidden = false;
    $('chart-title').textContent = title;
    $('chart-note').textContent = 'loading…';
    document.body.dataset.chart = 'loading';
    return ++chart.request;
  }

  function pointSeries(latlng) {
    var p = viewParams();
    if (!p.cid) return;
    var lon = latlng.lng.toFixed(6), lat = latlng.lat.toFixed(6);
    var req = start('at ' + lon + ', ' + lat, L.circleMarker(latlng, { radius: 6, color: '#d93025', weight: 2, fill: false }));
    var url = new URL('collections/' + encodeURIComponent(p.cid) + '/timeseries/point/' + lon + ',' + lat + (p.query ? '?' + p.query : ''), document.baseURI);
    fetchJSON(url.toString()).then(function (doc) {
      if (req !== chart.request) return;
      show('point', doc.properties.series.map(function (e) { return { datetime: e.datetime, values: e.values }; }));
    }).catch(failed(req));
  }

  function rectangleMeans(bounds) {
    var p = viewParams();
    if (!p.cid) return;
    var w = bounds.getWest(), s = bounds.getSouth(), e = bounds.getEast(), n = bounds.getNorth();
    var req = start('mean over rectangle', L.rectangle(bounds, { color: '#d93025', weight: 2, fill: false, interactive: false }));
    var geometry = { type: 'Polygon', coordinates: [[[w, s], [e, s], [e, n], [w, n], [w, s]]] };
    var url = new URL('collections/' + encodeURIComponent(p.cid) + '/timeseries/statistics' + (p.query ? '?' + p.query : ''), document.baseURI);
    fetchJSON(url.toString(), { method: 'POST', headers: { 'Content-Type': 'application/geo+json' }, body: JSON.stringify(geometry) }).then(function (doc) {
      if (req !== chart.request) return;
      show('rectangle', doc.series.map(function (e) {
        var values = {};
        Object.keys(e.statistics).forEach(function (k) { values[k] = e.statistics[k].mean; });
        return { datetime: e.datetime, values: values };
      }));
    }).catch(failed(req));
  }

  function failed(req) {
    return function (err) {
      if (req !== chart.request) return;
      $('chart-note').textContent = 'no series: ' + err.message;
      document.body.dataset.chart = 'failed';
    };
  }

  // --------------------------------------------------------------------------- drawing
  // a vertical band at the date selected on the time slider
  function highlightPlugin() {
    return {
      hooks: {
        drawClear: function (u) {
          var day = viewer.chartView().selectedDate;
          if (!day) return;
          var t0 = Date.parse(day + 'T00:00:00Z') / 1000;
          var x0 = u.valToPos(t0, 'x', true), x1 = u.valToPos(t0 + 86400, 'x', true);
          var ctx = u.ctx;
          ctx.save();
          ctx.fillStyle = 'rgba(242, 153, 0, 0.25)';
          ctx.fillRect(Math.min(x0, x1) - 3, u.bbox.top, Math.max(6, Math.abs(x1 - x0)), u.bbox.height);
          ctx.restore();
        },
      },
    };
  }

  function show(kind, entries) {
    chart.kind = kind;
    chart.series = entries;
    var names = [];
    entries.forEach(function (e) { Object.keys(e.values).forEach(function (k) { if (names.indexOf(k) < 0) names.push(k); }); });
    chart.names = names;
    chart.times = entries.map(function (e) { return e.datetime; });
    var xs = entries.map(function (e) { return Date.parse(e.datetime) / 1000; });
    var data = [xs].concat(names.map(function (n) { return entries.map(function (e) { var v = e.values[n]; return v === undefined ? null : v; }); }));
    if (chart.plot) { chart.plot.destroy(); chart.plot = null; }
    var host = $('chart-plot');
    host.innerHTML = '';
    if (!entries.length) {
      $('chart-note').textContent = 'no observation covers this ' + (kind === 'point' ? 'point' : 'rectangle');
      document.body.dataset.chart = 'ready';
      return;
    }
    var opts = {
      width: 440,
      height: 220,
      plugins: [highlightPlugin()],
      scales: { x: { time: true } },
      series: [{ label: 'date', value: function (u, v) { return v == null ? '–' : new Date(v * 1000).toISOString().slice(0, 10); } }].concat(
        names.map(function (n, i) {
          return { label: (kind === 'rectangle' ? 'mean ' : '') + n, stroke: COLORS[i % COLORS.length], width: 1.5, points: { show: true, size: 7 }, spanGaps: false };
        })
      ),
      axes: [{}, { size: 60 }],
    };
    chart.plot = new window.uPlot(opts, data, host);
    var count = entries.length;
    $('chart-note').textContent = count + ' observation' + (count === 1 ? '' : 's') + (kind === 'point' ? ' (native pixel under the click)' : ' (native pixels with centres inside)');
    document.body.dataset.chart = 'ready';
  }

  function redraw() { if (chart.plot) chart.plot.redraw(false); }
  $('time-slider').addEventListener('input', redraw);
  $('time-slider').addEventListener('change', redraw);
  $('all-dates').addEventListener('change', redraw);

  // --------------------------------------------------------------------------- map interaction
  var drawing = null; // {start, rect} while dragging a rectangle
  var drawnAt = 0; // Leaflet follows the mouseup that ends a rectangle with a click: that click is not a point query
  map.on('click', function (ev) {
    if (rectButton.classList.contains('active') || Date.now() - drawnAt < 500) return;
    pointSeries(ev.latlng);
  });
  rectButton.addEventListener('click', function () {
    var on = !rectButton.classList.contains('active');
    rectButton.classList.toggle('active', on);
    if (on) map.dragging.disable(); else map.dragging.enable();
    map.getContainer().style.cursor = on ? 'crosshair' : '';
  });
  map.on('mousedown', function (ev) {
    if (!rectButton.classList.contains('active')) return;
    drawing = { start: ev.latlng, rect: L.rectangle(L.latLngBounds(ev.latlng, ev.latlng), { color: '#d93025', weight: 1, dashArray: '4 4', fill: false, interactive: false }).addTo(map) };
  });
  map.on('mousemove', function (ev) {
    if (drawing) drawing.rect.setBounds(L.latLngBounds(drawing.start, ev.latlng));
  });
  map.on('mouseup', function (ev) {
    if (!drawing) return;
    var bounds = L.latLngBounds(drawing.start, ev.latlng);
    map.removeLayer(drawing.rect);
    drawing = null;
    drawnAt = Date.now();
    rectButton.classList.remove('active');
    map.dragging.enable();
    map.getContainer().style.cursor = '';
    if (bounds.getNorth() > bounds.getSouth() && bounds.getEast() > bounds.getWest()) rectangleMeans(bounds);
  });

  chart.point = pointSeries;
  chart.rectangle = function (w, s, e, n) { rectangleMeans(L.latLngBounds([s, w], [n, e])); };
  chart.close = close;
})();
