/* pixelquery-tiler viewer: Leaflet over the public STAC + tile API.
 *
 * Every request uses a URL relative to the page (or a link the server returned), so the viewer works behind a
 * path prefix or a reverse proxy. State for scripted checks is exposed as `window.pqViewer`, and
 * <body data-state> is "loading" while the shown tile layer loads and "idle" once all its visible tiles are in.
 */
(function () {
  'use strict';

  var TMS = 'WebMercatorQuad';
  // Band-ratio presets: a mode is offered when the collection has every band it names. The bands of one ratio
  // may be stored at different resolutions (Sentinel-2 nir at 10 m, swir16 at 20 m): the server reads each from
  // its own grid and mixes them per output pixel.
  var PRESETS = {
    ndvi: { expression: '(nir-red)/(nir+red)', bands: ['red', 'nir'], rescale: '-1,1', colormap: 'rdylgn',
      hint: 'NDVI from the nir and red bands, rescaled from −1…1' },
    ndmi: { expression: '(nir-swir16)/(nir+swir16)', bands: ['nir', 'swir16'], rescale: '-1,1', colormap: 'rdbu',
      hint: 'NDMI (moisture) from nir and swir16, each read at its own resolution, rescaled from −1…1' },
  };
  var MAX_PAGES = 100;

  var $ = function (id) { return document.getElementById(id); };

  var state = {
    collections: [],
    collection: null, // STAC collection object
    items: [], // STAC items of the collection (= snapshots)
    dates: [], // unique acquisition dates YYYY-MM-DD, ascending
    snapshots: [], // [{id, label, time}] oldest first
    bands: [], // common (or plain) band names
    tilejson: null,
    layer: null,
    itemLayer: null,
    footprint: null,
    extent: null,
    tileUrl: null,
    itemTileUrl: null,
    tilesLoaded: 0,
    tileErrors: 0,
    searchResults: [],
    generation: 0,
  };

  // ------------------------------------------------------------------ helpers
  function rel(path) { return new URL(path, document.baseURI).toString(); }

  // Links the server returns are absolute. Behind a reverse proxy that mounts the server under a prefix without
  // telling it, they miss the prefix (or name the backend host): rebase such links onto this page's base.
  function rebase(href) {
    var page = new URL(document.baseURI);
    var basePath = new URL('.', page).pathname;
    var u;
    try { u = new URL(href, page); } catch (e) { return href; }
    if (u.origin === page.origin && u.pathname.indexOf(basePath) === 0) return u.toString();
    return new URL(u.pathname.replace(/^\//, '') + u.search + u.hash, new URL(basePath, page)).toString();
  }

  function setStatus(msg, isError) {
    var el = $('status');
    el.textContent = msg;
    el.classList.toggle('error', !!isError);
    if (isError) document.body.dataset.error = msg; else delete document.body.dataset.error;
  }

  // Iceberg snapshot ids are 64-bit integers: JSON numbers beyond 2^53 lose digits in JavaScript, so they are
  // turned into strings before parsing.
  var BIG_ID = /("pixelquery:[a-z_]*snapshot_id"\s*:\s*)(-?\d{16,})/g;

  function getJSON(url) {
    return fetch(url, { headers: { Accept: 'application/json, application/geo+json' } }).then(function (r) {
      if (r.ok) return r.text().then(function (t) { return JSON.parse(t.replace(BIG_ID, '$1"$2"')); });
      {
        return r.text().then(function (t) {
          var detail = t;
          try { var j = JSON.parse(t); detail = j.detail || j.description || t; } catch (e) { /* not JSON */ }
          throw new Error(r.status + ' ' + (typeof detail === 'string' ? detail : JSON.stringify(detail)));
        });
      }
    });
  }

  function linkOf(obj, relName) {
    var links = (obj && obj.links) || [];
    for (var i = 0; i < links.length; i++) if (links[i].rel === relName) return links[i];
    return null;
  }

  // STAC paging: follow rel=next (GET) links, bounded.
  function getAllFeatures(url) {
    var out = [];
    function page(u, n) {
      return getJSON(u).then(function (fc) {
        out.push.apply(out, fc.features || []);
        var next = linkOf(fc, 'next');
        if (next && n < MAX_PAGES && (!next.method || next.method === 'GET') && (fc.features || []).length) {
          return page(rebase(next.href), n + 1);
        }
        return out;
      });
    }
    return page(url, 1);
  }

  function dateOf(item) {
    var p = item.properties || {};
    var d = p.datetime || p.start_datetime || '';
    return d.slice(0, 10);
  }

  function snapshotIdOf(item) {
    var v = (item.properties || {})['pixelquery:snapshot_id'];
    return v === undefined || v === null ? null : String(v);
  }

  // when the snapshot was committed (for ordering the time-travel list)
  function committedOf(item) {
    var p = item.properties || {};
    return p['pixelquery:committed_at'] || p['pixelquery:snapshot_timestamp'] || p['pixelquery:timestamp'] ||
      p.created || p.updated || p.datetime || '';
  }

  function bandNames(obj) {
    var p = (obj && (obj.properties || obj.summaries)) || {};
    var list = p.bands || p['eo:bands'] || [];
    var names = [];
    list.forEach(function (b) {
      if (!b) return;
      var n = b['eo:common_name'] || b.common_name || b.name;
      if (n && names.indexOf(n) < 0) names.push(n);
    });
    return names;
  }

  function bboxOf(collection) {
    try {
      var b = collection.extent.spatial.bbox[0];
      if (b && b.length >= 4) return b.length === 6 ? [b[0], b[1], b[3], b[4]] : b;
    } catch (e) { /* no extent */ }
    return null;
  }

  function boundsFromBbox(b) { return L.latLngBounds([b[1], b[0]], [b[3], b[2]]); }

  // --------------------------------------------------------------- the map
  // quarter-level zoom steps let the collection extent fill the map
  var map = L.map('map', { zoomControl: true, worldCopyJump: false, minZoom: 1, zoomSnap: 0.25, zoomDelta: 0.5 });
  map.setView([0, 0], 2);
  L.control.scale({ imperial: false }).addTo(map);
  map.attributionControl.setPrefix('<a href="https://leafletjs.com" target="_blank">Leaflet</a>');

  // ------------------------------------------------------------- rendering
  // The rendering the server recommends for a collection: the query of its newest item's xyz link
  // (product profile defaults such as bands=blue&rescale=7000,14000).
  function defaultRendering(items) {
    var r = { bands: null, expression: null, rescale: [], colormap: null };
    var newest = items.slice().sort(function (a, b) { return dateOf(a) < dateOf(b) ? 1 : -1; })[0];
    var link = newest && linkOf(newest, 'xyz');
    if (!link) return r;
    try {
      var q = new URL(templateHref(link.href), document.baseURI).searchParams;
      r.bands = q.get('bands');
      r.expression = q.get('expression');
      r.rescale = q.getAll('rescale');
      r.colormap = q.get('colormap_name');
    } catch (e) { /* keep the empty default */ }
    return r;
  }

  function renderParams() {
    var mode = $('render-mode').value;
    var p = [];
    var rescale = $('rescale').value.trim();
    var cmap = $('colormap').value;
    var def = state.defaultRender || {};
    if (mode === 'default') {
      if (def.expression) p.push(['expression', def.expression]);
      else if (def.bands) p.push(['bands', def.bands]);
    } else if (mode === 'rgb') p.push(['bands', 'red,green,blue']);
    else if (mode === 'band' && $('band').value) p.push(['bands', $('band').value]);
    else if (PRESETS[mode]) p.push(['expression', PRESETS[mode].expression]);
    else if (mode === 'expression' && $('expression').value.trim()) p.push(['expression', $('expression').value.trim()]);
    if (rescale) {
      rescale.split(';').forEach(function (r) { if (r.trim()) p.push(['rescale', r.trim()]); });
    }
    var defaultSingle = def.expression ? def.expression.indexOf(';') < 0 : def.bands ? def.bands.indexOf(',') < 0 : state.bands.length === 1;
    var singleOut = mode === 'band' || !!PRESETS[mode] || mode === 'expression' || (mode === 'default' && defaultSingle);
    if (cmap && singleOut) p.push(['colormap_name', cmap]);
    return p;
  }

  function timeParams() {
    var p = [];
    if (!$('all-dates').checked && state.dates.length) {
      p.push(['datetime', state.dates[+$('time-slider').value]]);
    }
    var snap = $('snapshot').value;
    if (snap) p.push(['snapshot_id', snap]);
    return p;
  }

  function query(pairs) {
    var q = new URLSearchParams();
    pairs.forEach(function (kv) { q.append(kv[0], kv[1]); });
    var s = q.toString();
    return s ? '?' + s : '';
  }

  function collectionTileUrl() {
    var cid = encodeURIComponent(state.collection.id);
    return 'collections/' + cid + '/tiles/' + TMS + '/{z}/{x}/{y}.png' + query(timeParams().concat(renderParams()));
  }

  function markLoading() {
    document.body.dataset.state = 'loading';
  }

  function markIdle() {
    var busy = (state.layer && state.layer._pqLoading) || (state.itemLayer && state.itemLayer._pqLoading);
    if (!busy) {
      document.body.dataset.state = 'idle';
      document.body.dataset.tilesLoaded = String(state.tilesLoaded);
    }
  }

  function makeTileLayer(url, opts) {
    var tj = state.tilejson || {};
    var o = {
      tileSize: 256,
      minZoom: 0,
      maxZoom: 22,
      maxNativeZoom: typeof tj.maxzoom === 'number' ? tj.maxzoom : 18,
      crossOrigin: false,
      keepBuffer: 1,
      updateWhenIdle: true,
    };
    if (opts && opts.bounds) o.bounds = opts.bounds;
    var layer = L.tileLayer(url, o);
    layer._pqLoading = true;
    layer.on('loading', function () { layer._pqLoading = true; markLoading(); });
    layer.on('tileload', function () { state.tilesLoaded += 1; });
    layer.on('tileerror', function () { state.tileErrors += 1; });
    layer.on('load', function () { layer._pqLoading = false; markIdle(); });
    return layer;
  }

  // Leaflet fires neither 'loading' nor 'load' when no tile of the layer is in view.
  function settleIfNothingToLoad(layer) {
    setTimeout(function () { if (!layer.isLoading() && layer._pqLoading) layer.fire('load'); }, 0);
  }

  // Replace the collection layer; the old one stays until the new one has loaded (no flicker).
  function refreshLayer() {
    if (!state.collection) return;
    var url = collectionTileUrl();
    if (url === state.tileUrl && state.layer) return;
    state.tileUrl = url;
    var old = state.layer;
    var gen = ++state.generation;
    var layer = makeTileLayer(url, { bounds: state.extent ? state.extent.pad(0.02) : null });
    state.layer = layer;
    markLoading();
    layer.once('load', function () {
      if (old && map.hasLayer(old)) map.removeLayer(old);
      if (gen === state.generation) setStatus(describe());
    });
    layer.addTo(map);
    settleIfNothingToLoad(layer);
    if (state.itemLayer) state.itemLayer.bringToFront();
    if (old) old.setZIndex(0);
    layer.setZIndex(1);
    updateWmtsLink();
  }

  function describe() {
    var parts = [state.collection.id];
    parts.push($('all-dates').checked ? 'all dates' : (state.dates[+$('time-slider').value] || 'no dates'));
    if ($('snapshot').value) parts.push('as of snapshot ' + $('snapshot').value);
    var mode = $('render-mode');
    parts.push(mode.options[mode.selectedIndex].text);
    return parts.join(' · ');
  }

  // links for other clients, with the current rendering (and snapshot); WMTS carries the dates as its Time dimension
  function updateWmtsLink() {
    var cid = encodeURIComponent(state.collection.id);
    var snap = $('snapshot').value ? [['snapshot_id', $('snapshot').value]] : [];
    var wmts = rel('collections/' + cid + '/WMTSCapabilities.xml' + query(snap.concat(renderParams())));
    $('wmts-link').href = wmts;
    $('wmts-url').value = wmts;
    $('xyz-url').value = rel(state.tileUrl).replace(/%7B/gi, '{').replace(/%7D/gi, '}');
  }

  // presets per mode; rescale/colormap stay editable afterwards
  function applyMode() {
    var mode = $('render-mode').value;
    $('band-row').classList.toggle('shown', mode === 'band');
    $('expression-row').classList.toggle('shown', mode === 'expression');
    var hint = '';
    if (PRESETS[mode]) {
      $('rescale').value = PRESETS[mode].rescale;
      setColormap(PRESETS[mode].colormap);
      hint = PRESETS[mode].hint;
    } else if (mode === 'expression') {
      if (!$('expression').value) $('expression').value = state.bands.length ? state.bands[0] : 'b1';
      hint = 'band common names: ' + state.bands.join(', ');
      if (!$('colormap').value) $('colormap').value = 'viridis';
    } else if (mode === 'band') {
      $('rescale').value = state.autoRescale || '';
      if (!$('colormap').value) $('colormap').value = 'greys';
    } else {
      $('rescale').value = state.autoRescale || '';
      setColormap(mode === 'default' && state.defaultRender && state.defaultRender.colormap || '');
    }
    $('render-hint').textContent = hint;
  }

  function setColormap(name) {
    var sel = $('colormap');
    if (name && !Array.prototype.some.call(sel.options, function (o) { return o.value === name; })) sel.add(new Option(name, name));
    sel.value = name;
  }

  function configureModes() {
    var has = function (n) { return state.bands.indexOf(n) >= 0; };
    var opts = $('render-mode').options;
    for (var i = 0; i < opts.length; i++) {
      var v = opts[i].value;
      if (v === 'rgb') opts[i].disabled = !(has('red') && has('green') && has('blue'));
      if (PRESETS[v]) opts[i].disabled = !PRESETS[v].bands.every(has);
      if (v === 'band') opts[i].disabled = state.bands.length === 0;
    }
    var sel = $('band');
    sel.innerHTML = '';
    state.bands.forEach(function (b) { sel.add(new Option(b, b)); });
    if (opts[$('render-mode').selectedIndex].disabled) $('render-mode').value = 'default';
  }

  // a first rescale guess from the items' band statistics (raster extension), if the server gives any
  function guessRescale(items) {
    var lo = Infinity, hi = -Infinity;
    items.forEach(function (it) {
      var p = it.properties || {};
      var sources = [].concat(p.bands || [], p['raster:bands'] || []);
      Object.keys(it.assets || {}).forEach(function (k) {
        var a = it.assets[k];
        sources = sources.concat(a.bands || [], a['raster:bands'] || []);
      });
      sources.forEach(function (b) {
        var s = b && (b.statistics || b['raster:statistics']);
        if (!s) return;
        var mn = s.percentile_2 !== undefined ? s.percentile_2 : s.minimum;
        var mx = s.percentile_98 !== undefined ? s.percentile_98 : s.maximum;
        if (typeof mn === 'number') lo = Math.min(lo, mn);
        if (typeof mx === 'number') hi = Math.max(hi, mx);
      });
    });
    if (isFinite(lo) && isFinite(hi) && hi > lo) return Math.floor(lo) + ',' + Math.ceil(hi);
    return '';
  }

  // --------------------------------------------------------------- time
  // acquisition dates present in the collection as of the selected snapshot (all dates at the head)
  function datesAsOf(snapshotId) {
    var items = state.items;
    if (snapshotId) {
      var upto = null;
      state.snapshots.forEach(function (s, i) { if (s.id === snapshotId) upto = i; });
      if (upto !== null) items = state.snapshots.slice(0, upto + 1).map(function (s) { return s.item; });
    }
    var dates = {};
    items.forEach(function (it) { var d = dateOf(it); if (d) dates[d] = true; });
    return Object.keys(dates).sort();
  }

  function setupTime(keepDate) {
    var slider = $('time-slider');
    state.dates = datesAsOf($('snapshot').value);
    slider.max = String(Math.max(0, state.dates.length - 1));
    var keep = keepDate ? state.dates.indexOf(keepDate) : -1;
    slider.value = keep >= 0 ? String(keep) : slider.max; // latest, like the WMTS Default
    slider.disabled = state.dates.length < 2 || $('all-dates').checked;
    var ticks = $('time-ticks');
    ticks.innerHTML = '';
    state.dates.forEach(function (d, i) { ticks.appendChild(new Option(d, String(i))); });
    slider.setAttribute('list', 'time-ticks');
    $('time-count').textContent = state.dates.length + ' date' + (state.dates.length === 1 ? '' : 's');
    showTimeLabel();
  }

  function showTimeLabel() {
    var label = $('all-dates').checked ? 'all dates' : (state.dates[+$('time-slider').value] || '–');
    $('time-label').textContent = label;
  }

  function setupSnapshots() {
    var sel = $('snapshot');
    sel.innerHTML = '';
    sel.add(new Option('latest (current head)', ''));
    state.snapshots.slice().reverse().forEach(function (s) { sel.add(new Option(s.label, s.id)); });
  }

  // ----------------------------------------------------------- collections
  function loadCollection(cid) {
    var coll = null;
    state.collections.forEach(function (c) { if (c.id === cid) coll = c; });
    if (!coll) return Promise.resolve();
    state.collection = coll;
    state.tileUrl = null;
    setStatus('loading ' + cid + '…');
    markLoading();
    var enc = encodeURIComponent(cid);
    var items = getAllFeatures(rel('stac/collections/' + enc + '/items?limit=200'));
    var tj = getJSON(rel('collections/' + enc + '/' + TMS + '/tilejson.json')).catch(function () { return null; });
    return Promise.all([items, tj]).then(function (res) {
      var items = res[0];
      state.tilejson = res[1];
      state.items = items;
      state.snapshots = items.filter(function (it) { return snapshotIdOf(it) !== null; }).map(function (it) {
        return { id: snapshotIdOf(it), time: committedOf(it), item: it,
          label: dateOf(it) + ' · ' + it.id + ' (' + snapshotIdOf(it) + ')' };
      }).sort(function (a, b) { return a.time < b.time ? -1 : a.time > b.time ? 1 : 0; });
      var names = bandNames(coll);
      items.forEach(function (it) { bandNames(it).forEach(function (n) { if (names.indexOf(n) < 0) names.push(n); }); });
      state.bands = names;
      state.defaultRender = defaultRendering(items);
      state.autoRescale = state.defaultRender.rescale.join(';') || guessRescale(items);

      var bbox = bboxOf(coll) || (state.tilejson && state.tilejson.bounds);
      if (state.extentLayer) map.removeLayer(state.extentLayer);
      state.extent = null;
      if (bbox) {
        state.extent = boundsFromBbox(bbox);
        state.extentLayer = L.rectangle(state.extent, { color: '#0b57d0', weight: 1.5, fill: false, dashArray: '4 4', interactive: false }).addTo(map);
        map.fitBounds(state.extent, { animate: false });
      }
      $('collection-info').textContent = (coll.title && coll.title !== coll.id ? coll.title + ' · ' : '') +
        items.length + ' item' + (items.length === 1 ? '' : 's') + (state.bands.length ? ' · bands: ' + state.bands.join(', ') : '');
      setupSnapshots();
      setupTime();
      configureModes();
      applyMode();
      clearItem();
      $('search-results').innerHTML = '';
      $('search-status').textContent = '';
      refreshLayer();
    }).catch(function (err) {
      setStatus('could not load ' + cid + ': ' + err.message, true);
    });
  }

  // ---------------------------------------------------------------- search
  function mapBbox() {
    var b = map.getBounds();
    var clamp = function (v, lo, hi) { return Math.max(lo, Math.min(hi, v)); };
    return [clamp(b.getWest(), -180, 180), clamp(b.getSouth(), -90, 90), clamp(b.getEast(), -180, 180), clamp(b.getNorth(), -90, 90)]
      .map(function (v) { return +v.toFixed(6); });
  }

  function search() {
    var pairs = [['bbox', mapBbox().join(',')], ['limit', '100']];
    if (!$('search-all-collections').checked && state.collection) pairs.push(['collections', state.collection.id]);
    var from = $('search-from').value, to = $('search-to').value;
    if (from || to) pairs.push(['datetime', (from ? from + 'T00:00:00Z' : '..') + '/' + (to ? to + 'T23:59:59Z' : '..')]);
    $('search-status').textContent = 'searching…';
    document.body.dataset.search = 'running';
    return getAllFeatures(rel('stac/search' + query(pairs))).then(function (features) {
      state.searchResults = features;
      var ol = $('search-results');
      ol.innerHTML = '';
      features.forEach(function (it, i) {
        var li = document.createElement('li');
        li.dataset.itemId = it.id;
        li.dataset.collection = it.collection || '';
        li.tabIndex = 0;
        var title = document.createElement('span');
        title.textContent = it.id;
        var meta = document.createElement('span');
        meta.className = 'muted';
        meta.textContent = (it.collection || '') + ' · ' + dateOf(it) + (snapshotIdOf(it) ? ' · snapshot ' + snapshotIdOf(it) : '');
        li.appendChild(title);
        li.appendChild(meta);
        li.addEventListener('click', function () { showItem(it, li); });
        li.addEventListener('keydown', function (e) { if (e.key === 'Enter') showItem(it, li); });
        ol.appendChild(li);
      });
      $('search-status').textContent = features.length + ' item' + (features.length === 1 ? '' : 's') + ' in the map extent';
      document.body.dataset.search = 'done';
    }).catch(function (err) {
      $('search-status').textContent = 'search failed: ' + err.message;
      document.body.dataset.search = 'failed';
    });
  }

  function templateHref(href) {
    return href.replace(/%7B/gi, '{').replace(/%7D/gi, '}');
  }

  function itemTileUrl(item) {
    var link = linkOf(item, 'xyz');
    var href;
    if (link) {
      href = templateHref(rebase(templateHref(link.href)));
    } else { // fall back to the item tile endpoint of the contract
      href = rel('collections/' + encodeURIComponent(item.collection) + '/items/' + encodeURIComponent(item.id) +
        '/tiles/' + TMS + '/{z}/{x}/{y}.png');
    }
    // an item is pinned already: add the current rendering only, and only for the collection it belongs to
    if (state.collection && item.collection === state.collection.id) {
      var render = renderParams();
      if (render.length) {
        var qi = href.indexOf('?');
        var base = qi < 0 ? href : href.slice(0, qi);
        var q = new URLSearchParams(qi < 0 ? '' : href.slice(qi + 1));
        render.forEach(function (kv) { q.delete(kv[0]); });
        render.forEach(function (kv) { q.append(kv[0], kv[1]); });
        href = base + '?' + q.toString();
      }
    }
    return href;
  }

  function showItem(item, li) {
    clearItem();
    var lis = $('search-results').querySelectorAll('li');
    for (var i = 0; i < lis.length; i++) lis[i].classList.remove('active');
    if (li) li.classList.add('active');
    var url = itemTileUrl(item);
    state.itemTileUrl = url;
    state.shownItem = item;
    var bounds = item.bbox ? boundsFromBbox(item.bbox) : null;
    state.itemLayer = makeTileLayer(url, { bounds: bounds ? bounds.pad(0.02) : null });
    markLoading();
    state.itemLayer.addTo(map).setZIndex(10);
    settleIfNothingToLoad(state.itemLayer);
    if (item.geometry) {
      state.footprint = L.geoJSON(item.geometry, { style: { color: '#e8710a', weight: 2, fill: false }, interactive: false }).addTo(map);
    }
    $('item-clear').disabled = false;
    setStatus('item ' + item.id + (item.collection ? ' (' + item.collection + ')' : ''));
  }

  function clearItem() {
    if (state.itemLayer) map.removeLayer(state.itemLayer);
    if (state.footprint) map.removeLayer(state.footprint);
    state.itemLayer = null;
    state.footprint = null;
    state.shownItem = null;
    state.itemTileUrl = null;
    $('item-clear').disabled = true;
    var lis = $('search-results').querySelectorAll('li.active');
    for (var i = 0; i < lis.length; i++) lis[i].classList.remove('active');
    markIdle();
  }

  // ----------------------------------------------------------------- wiring
  var timer = null;
  function debounced(fn, ms) {
    return function () {
      clearTimeout(timer);
      timer = setTimeout(fn, ms);
    };
  }
  var refreshSoon = debounced(refreshLayer, 200);

  $('collection').addEventListener('change', function () {
    var cid = $('collection').value;
    if (history.replaceState) history.replaceState(null, '', '#' + encodeURIComponent(cid));
    loadCollection(cid);
  });
  $('time-slider').addEventListener('input', function () { showTimeLabel(); refreshSoon(); });
  $('time-slider').addEventListener('change', function () { showTimeLabel(); refreshSoon(); });
  $('all-dates').addEventListener('change', function () {
    $('time-slider').disabled = $('all-dates').checked || state.dates.length < 2;
    showTimeLabel();
    refreshLayer();
  });
  $('snapshot').addEventListener('change', function () {
    setupTime(state.dates[+$('time-slider').value]);
    refreshLayer();
  });
  $('render-mode').addEventListener('change', function () { applyMode(); refreshLayer(); });
  $('band').addEventListener('change', refreshLayer);
  $('expression').addEventListener('change', refreshLayer);
  $('rescale').addEventListener('change', refreshLayer);
  $('colormap').addEventListener('change', refreshLayer);
  $('search-btn').addEventListener('click', search);
  $('item-clear').addEventListener('click', clearItem);

  // ------------------------------------------------------------------ start
  window.pqViewer = {
    state: state,
    map: map,
    loadCollection: function (cid) { $('collection').value = cid; return loadCollection(cid); },
    search: search,
    tileUrl: function () { return state.tileUrl; },
    // what chart.js needs to ask for the series of the current rendering
    chartView: function () {
      return {
        collection: state.collection && state.collection.id,
        render: renderParams(),
        snapshotId: $('snapshot').value,
        selectedDate: $('all-dates').checked ? null : state.dates[+$('time-slider').value] || null,
      };
    },
  };

  getJSON(rel('stac/collections')).then(function (res) {
    state.collections = (res.collections || []).slice().sort(function (a, b) { return a.id < b.id ? -1 : 1; });
    var sel = $('collection');
    sel.innerHTML = '';
    state.collections.forEach(function (c) { sel.add(new Option(c.id, c.id)); });
    if (!state.collections.length) {
      setStatus('the warehouse has no collections yet: pixelquery-tiler ingest WAREHOUSE FILE --collection NAME');
      document.body.dataset.state = 'idle';
      return;
    }
    var wanted = decodeURIComponent((location.hash || '').slice(1));
    var first = state.collections.some(function (c) { return c.id === wanted; }) ? wanted : state.collections[0].id;
    sel.value = first;
    return loadCollection(first);
  }).catch(function (err) {
    setStatus('could not reach the STAC API: ' + err.message, true);
    document.body.dataset.state = 'idle';
  });
})();
