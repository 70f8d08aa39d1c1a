/* "Add imagery" panel: shown only when the server accepts writes (it has API keys).
 *
 * Paste the key once (kept in this browser's localStorage), drop a GeoTIFF: it is streamed to POST uploads,
 * an ingest job is queued with POST jobs, and the job is polled (queued -> running -> succeeded/failed). On
 * success the collection is reloaded through window.pqViewer, so the new date appears on the time slider
 * without a page reload. <section id="add-imagery" data-job-status> mirrors the job state for scripted checks.
 * Every URL is relative to the page, like the rest of the viewer.
 */
(function () {
  'use strict';

  var KEY_STORE = 'pixelquery-api-key';
  var $ = function (id) { return document.getElementById(id); };
  var rel = function (path) { return new URL(path, document.baseURI).toString(); };

  function build() {
    var css = document.createElement('link');
    css.rel = 'stylesheet';
    css.href = 'static/viewer/upload.css';
    document.head.appendChild(css);
    var section = document.createElement('section');
    section.id = 'add-imagery';
    section.innerHTML =
      '<h2>Add imagery</h2>' +
      '<label for="api-key">API key</label>' +
      '<input id="api-key" type="password" autocomplete="off" spellcheck="false" placeholder="paste once">' +
      '<label for="upload-collection">Into collection</label>' +
      '<input id="upload-collection" type="text" spellcheck="false">' +
      '<label for="upload-datetime">Acquired (optional, ISO 8601)</label>' +
      '<input id="upload-datetime" type="text" spellcheck="false" placeholder="from the file">' +
      '<div id="drop-zone" tabindex="0" role="button" aria-label="drop a GeoTIFF here or choose a file">' +
      'Drop a GeoTIFF here or <u>choose a file</u></div>' +
      '<input id="upload-file" type="file" accept=".tif,.tiff,image/tiff" hidden>' +
      '<progress id="upload-progress" max="1" value="0" hidden></progress>' +
      '<div id="upload-status" class="muted" role="status"></div>';
    $('status').parentNode.insertBefore(section, $('status'));
    $('api-key').value = localStorage.getItem(KEY_STORE) || '';
    $('api-key').addEventListener('change', function () { localStorage.setItem(KEY_STORE, $('api-key').value.trim()); });
    $('upload-collection').value = $('collection').value || '';
    $('collection').addEventListener('change', function () { $('upload-collection').value = $('collection').value; });

    var zone = $('drop-zone');
    zone.addEventListener('click', function () { $('upload-file').click(); });
    zone.addEventListener('keydown', function (e) { if (e.key === 'Enter' || e.key === ' ') $('upload-file').click(); });
    zone.addEventListener('dragover', function (e) { e.preventDefault(); zone.classList.add('over'); });
    zone.addEventListener('dragleave', function () { zone.classList.remove('over'); });
    zone.addEventListener('drop', function (e) {
      e.preventDefault();
      zone.classList.remove('over');
      if (e.dataTransfer && e.dataTransfer.files.length) ingest(e.dataTransfer.files[0]);
    });
    $('upload-file').addEventListener('change', function () { if (this.files.length) ingest(this.files[0]); });
  }

  function show(status, text, isError) {
    $('add-imagery').dataset.jobStatus = status;
    $('upload-status').textContent = text;
    $('upload-status').classList.toggle('error', !!isError);
  }

  function request(method, path, body, headers) {
    var key = $('api-key').value.trim();
    localStorage.setItem(KEY_STORE, key);
    var h = Object.assign({ Authorization: 'Bearer ' + key }, headers || {});
    return fetch(rel(path), { method: method, body: body, headers: h }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (doc) {
        if (!r.ok) {
          var detail = typeof doc.detail === 'string' ? doc.detail : JSON.stringify(doc.detail || doc);
          throw new Error(r.status + ': ' + detail);
        }
        return doc;
      });
    });
  }

  function ingest(file) {
    var collection = $('upload-collection').value.trim() || $('collection').value;
    if (!collection) { show('failed', 'name a collection first', true); return; }
    var form = new FormData();
    form.append('file', file, file.name);
    show('uploading', 'uploading ' + file.name + '…');
    request('POST', 'uploads', form).then(function (up) {
      var job = { collection: collection, sources: [up.source] };
      var when = $('upload-datetime').value.trim();
      if (when) job.datetime = when;
      return request('POST', 'jobs', JSON.stringify(job), { 'Content-Type': 'application/json' });
    }).then(function (job) {
      return poll(job.id, collection);
    }).catch(function (err) {
      show('failed', 'failed: ' + err.message, true);
    });
  }

  function poll(id, collection) {
    return fetch(rel('jobs/' + encodeURIComponent(id))).then(function (r) { return r.json(); }).then(function (job) {
      var bar = $('upload-progress');
      bar.hidden = job.status !== 'running';
      bar.value = job.progress || 0;
      if (job.status === 'failed') { show('failed', 'job failed: ' + job.error, true); return null; }
      if (job.status !== 'succeeded') {
        show(job.status, 'job ' + job.status + (job.status === 'running' ? ' (' + Math.round(100 * job.progress) + '%)' : '') + '…');
        return new Promise(function (resolve) { setTimeout(resolve, 500); }).then(function () { return poll(id, collection); });
      }
      return refresh(collection).then(function () {
        show('succeeded', 'added ' + job.items.join(', '));
        return job;
      });
    });
  }

  // the new item (maybe a new collection) on the map and the time slider, without a page reload
  function refresh(collection) {
    var viewer = window.pqViewer;
    return fetch(rel('stac/collections')).then(function (r) { return r.json(); }).then(function (res) {
      viewer.state.collections = (res.collections || []).slice().sort(function (a, b) { return a.id < b.id ? -1 : 1; });
      var sel = $('collection');
      sel.innerHTML = '';
      viewer.state.collections.forEach(function (c) { sel.add(new Option(c.id, c.id)); });
      return viewer.loadCollection(collection);
    });
  }

  fetch(rel('jobs?limit=1')).then(function (r) { return r.ok ? r.json() : {}; }).then(function (res) {
    if (res.writes) build();
  }).catch(function () { /* no jobs API: a read-only server */ });
})();
