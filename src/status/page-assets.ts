/**
 * The status page's script and style sheet (page.ts renders the document
 * around them): data, kept apart from the rendering code. Both are inlined
 * into the one response, the script under the response's CSP nonce.
 */

/**
 * The page's script: reads the embedded rows, filters them by the text box
 * and the state buttons, and renders one page of rows at a time. Plain
 * ES2017, no framework; the row markup mirrors `rowHtml` of page.ts.
 */
export const PAGE_SCRIPT = `(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('sk-data').textContent);
  var labels = data.labels, rows = data.rows, size = data.pageSize;
  var hay = rows.map(function (r) {
    return (r.i + '\\n' + r.s + '\\n' + (labels[r.s] || '') + '\\n' + r.c + '\\n' + r.p + '\\n' + r.e + '\\n' + r.f).toLowerCase();
  });
  var box = document.getElementById('filter');
  var tbody = document.querySelector('#certificates tbody');
  var shown = document.getElementById('shown');
  var prev = document.getElementById('prev');
  var next = document.getElementById('next');
  var chips = Array.prototype.slice.call(document.querySelectorAll('button.chip'));
  var picked = {};
  var page = 0;
  var matches = [];
  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
    });
  }
  function row(r) {
    var last = r.f
      ? '<details><summary>' + esc(r.e) + '</summary>' + esc(r.f) + '</details>'
      : '<span title="' + esc(r.e) + '">' + esc(r.e) + '</span>';
    return '<tr class="cert state-' + esc(r.s) + '" data-id="' + esc(r.i) + '" data-state="' + esc(r.s) + '"' +
      (r.l === null ? '' : ' data-seconds-left="' + r.l + '"') + '>' +
      '<td class="id" title="' + esc(r.i + '\\ncertificate: ' + r.c + '\\nstaple: ' + r.p) + '">' + esc(r.i) + '</td>' +
      '<td class="state"><span class="badge">' + esc(labels[r.s] || r.s) + '</span></td>' +
      '<td class="left" title="' + esc(r.ua) + '">' + esc(r.u) + '</td>' +
      '<td class="next" title="' + esc(r.n) + '">' + esc(r.n) + '</td>' +
      '<td class="last' + (r.x ? ' error' : '') + '">' + last + '</td></tr>';
  }
  function anyPicked() {
    for (var k in picked) if (picked[k]) return true;
    return false;
  }
  function compute() {
    var q = box.value.trim().toLowerCase().split(/\\s+/).filter(Boolean);
    var states = anyPicked();
    matches = [];
    for (var n = 0; n < rows.length; n++) {
      if (states && !picked[rows[n].s]) continue;
      var ok = true;
      for (var w = 0; w < q.length && ok; w++) ok = hay[n].indexOf(q[w]) >= 0;
      if (ok) matches.push(n);
    }
  }
  function render() {
    var pages = Math.max(1, Math.ceil(matches.length / size));
    if (page >= pages) page = pages - 1;
    if (page < 0) page = 0;
    var from = page * size, to = Math.min(matches.length, from + size);
    var html = [];
    for (var n = from; n < to; n++) html.push(row(rows[matches[n]]));
    if (html.length === 0) html.push('<tr class="empty"><td colspan="5">' +
      (rows.length === 0 ? 'No certificates: check the configuration.' : 'No certificate matches the filter.') + '</td></tr>');
    tbody.innerHTML = html.join('');
    shown.textContent = matches.length === 0 ? 'no matches' :
      (from + 1) + '\\u2013' + to + ' of ' + matches.length +
      (matches.length === rows.length ? '' : ' (filtered from ' + rows.length + ')');
    prev.disabled = page === 0;
    next.disabled = page >= pages - 1;
    chips.forEach(function (c) { c.setAttribute('aria-pressed', picked[c.dataset.state] ? 'true' : 'false'); });
    var h = [];
    if (box.value) h.push('q=' + encodeURIComponent(box.value));
    var s = Object.keys(picked).filter(function (k) { return picked[k]; });
    if (s.length) h.push('s=' + s.join(','));
    if (page) h.push('p=' + (page + 1));
    history.replaceState(null, '', h.length ? '#' + h.join('&') : location.pathname + location.search);
  }
  // a chip or "all" applies the filter box too: a typed change still waiting for its timer would only move back to page 1
  function update() { clearTimeout(timer); compute(); page = 0; render(); }
  location.hash.replace(/^#/, '').split('&').forEach(function (kv) {
    var i = kv.indexOf('='), k = kv.slice(0, i), v = decodeURIComponent(kv.slice(i + 1));
    if (k === 'q') box.value = v;
    if (k === 's') v.split(',').forEach(function (s) { picked[s] = true; });
    if (k === 'p') page = (parseInt(v, 10) || 1) - 1;
  });
  var timer;
  box.addEventListener('input', function () { clearTimeout(timer); timer = setTimeout(update, 120); });
  chips.forEach(function (c) {
    c.addEventListener('click', function () { picked[c.dataset.state] = !picked[c.dataset.state]; update(); });
  });
  document.getElementById('all').addEventListener('click', function () { picked = {}; box.value = ''; update(); });
  prev.addEventListener('click', function () { page--; render(); });
  next.addEventListener('click', function () { page++; render(); });
  compute();
  render();
  document.body.classList.add('js');
  var auto = document.getElementById('auto');
  setInterval(function () {
    if (auto.checked && document.activeElement !== box && !document.querySelector('details[open]')) location.reload();
  }, data.refresh * 1000);
})();`;

/** The page's style sheet: the layout, then one rule set per state (its row, chip and badge colours). */
export function pageCss(states: ReadonlyArray<{ state: string; background: string; accent: string }>): string {
  return [
    '*{box-sizing:border-box}',
    'body{font:14px/1.35 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;padding:1em 1.5em;color:#1b1b1b;background:#fafafa}',
    'h1{font-size:1.3em;margin:0;display:inline-block;margin-right:.8em}',
    '.meta{color:#555;display:inline}',
    '.meta a{color:#1a4f8b}',
    '.summary{margin:.7em 0;padding:.6em .8em;background:#fff;border:1px solid #ddd;border-radius:6px}',
    '.chips{display:flex;flex-wrap:wrap;gap:.35em;margin-bottom:.45em}',
    '.chip{font:inherit;font-weight:600;border:1px solid transparent;border-radius:1em;padding:.15em .7em;cursor:pointer}',
    '.chip[aria-pressed="true"]{outline:2px solid #1b1b1b;outline-offset:1px}',
    '.chip.zero{opacity:.45}',
    '#all{font:inherit;border:1px solid #bbb;background:#fff;border-radius:1em;padding:.15em .7em;cursor:pointer}',
    '.facts{margin:.2em 0 0;color:#333}',
    '.facts b{font-weight:600}',
    '.controls{display:flex;gap:.6em;align-items:center;margin:.5em 0;flex-wrap:wrap}',
    '#filter{font:inherit;padding:.3em .5em;width:28em;max-width:100%;border:1px solid #aaa;border-radius:4px}',
    '.controls button{font:inherit;padding:.2em .7em}',
    '.nojs{display:none}',
    'body:not(.js) .needjs{display:none}',
    'body:not(.js) .nojs{display:inline}',
    'table{border-collapse:collapse;width:100%;background:#fff;table-layout:fixed}',
    'col.c-id{width:24%}col.c-state{width:8.5em}col.c-left{width:9.5em}col.c-next{width:12em}',
    'th,td{text-align:left;padding:.28em .55em;border-bottom:1px solid #e2e2e2;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}',
    'th{background:#efefef;font-weight:600;position:sticky;top:0}',
    'td.id{font-weight:600}',
    '.badge{font-weight:700;font-size:.85em;text-transform:uppercase}',
    'td.last details summary{cursor:pointer;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}',
    'td.last details[open]{white-space:normal;word-break:break-word}',
    'td.last details[open] summary{display:none}',
    '.error{color:#8a1010}',
    ...states.flatMap((s) => [
      `tr.state-${s.state},.chip.state-${s.state}{background-color:${s.background}}`,
      `tr.state-${s.state} td:first-child{border-left:6px solid ${s.accent}}`,
      `tr.state-${s.state} .badge,.chip.state-${s.state}{color:${s.accent}}`,
      `.chip.state-${s.state}{border-color:${s.accent}}`,
    ]),
  ].join('\n');
}
