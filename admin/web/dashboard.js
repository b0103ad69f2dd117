// Postern admin dashboard: refreshes the server-rendered page from
// GET /api/dashboard. Mirrors admin/dashboard_page.go (dashboardTables,
// figures, formatBits, ...); TestDashboardFormatsAgree keeps them in step.
'use strict';
(() => {
  const poll = Number(document.body.dataset.poll) || 2000;
  const status = document.getElementById('status');
  const pauseButton = document.getElementById('pause');
  let paused = false;
  let timer = 0;

  const si = (v, unit) => {
    const prefixes = ['', 'k', 'M', 'G', 'T', 'P'];
    let i = 0;
    while (v >= 999.5 && i < prefixes.length - 1) { v /= 1000; i++; }
    if (i === 0 || v >= 99.95) return `${v.toFixed(0)} ${prefixes[i]}${unit}`;
    if (v >= 9.995) return `${v.toFixed(1)} ${prefixes[i]}${unit}`;
    return `${v.toFixed(2)} ${prefixes[i]}${unit}`;
  };
  const fmtBits = (b) => si(b, 'bit/s');
  const fmtBytes = (n) => si(n, 'B');
  const fmtAge = (s) => {
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  };
  const fmtTime = (iso) => iso.slice(0, 19).replace('T', ' ');
  const portOf = (listener) => {
    const p = Number(listener.slice(listener.lastIndexOf(':') + 1));
    return Number.isInteger(p) ? p : 0;
  };
  const door = (transport, port) => transport.toUpperCase() + (port ? ` ${port}` : '');
  const certStatus = (c) => {
    switch (c.status) {
      case 'pending': return 'Pending: ACME has not issued it yet';
      case 'critical':
        return c.days_left < 0 || (c.not_after && Date.parse(c.not_after) < Date.now()) ? 'Expired' : 'Critical: renew now';
      case 'warn': return 'Renew soon';
    }
    return 'OK';
  };
  const certExpiry = (c) => {
    if (!c.not_after) return 'not yet issued';
    const date = c.not_after.slice(0, 10);
    if (c.days_left < 0) return `${date} (${-c.days_left} days ago)`;
    if (c.days_left === 1) return `${date} (in 1 day)`;
    return `${date} (in ${c.days_left} days)`;
  };
  const cell = (text, cls) => ({ text: String(text), cls });

  // tables returns, by table ID, the caption and rows to show.
  const tables = (d) => ({
    't-doors': { rows: d.listeners.map((l) => ({ cells: [cell(door(l.transport, l.port)), cell(l.listener), cell(l.active), cell(l.created)] })) },
    't-sessions': {
      caption: d.sessions.length < d.sessions_total
        ? `Live allocations: the newest ${d.sessions.length} of ${d.sessions_total} (all of them: GET /api/sessions)`
        : 'Live allocations, newest first',
      rows: d.sessions.map((s) => ({
        id: String(s.id),
        cells: [cell(s.id), cell(s.user), cell(door(s.transport, portOf(s.listener))), cell(s.client), cell(s.relayed),
          cell(fmtAge(s.age_seconds)), cell(fmtBytes(s.bytes))],
      })),
    },
    't-top-allocations': { rows: d.top_users_by_allocations.map((u) => ({ cells: [cell(u.user), cell(u.allocations), cell(fmtBytes(u.bytes))] })) },
    't-top-bytes': { rows: d.top_users_by_bytes.map((u) => ({ cells: [cell(u.user), cell(fmtBytes(u.bytes)), cell(u.allocations)] })) },
    't-drops': { rows: d.drops.map((r) => ({ cells: [cell(r.reason), cell(r.count)] })) },
    't-auth': { rows: d.auth_failures.map((r) => ({ cells: [cell(r.reason), cell(r.count)] })) },
    't-recent-auth': { rows: d.recent_auth_failures.map((f) => ({ cells: [cell(fmtTime(f.time)), cell(f.client), cell(f.transport), cell(f.reason), cell(f.username)] })) },
    't-certs': { rows: d.certificates.map((c) => ({ cells: [cell(certStatus(c), `st-${c.status}`), cell(certExpiry(c)), cell(c.names.join(', ')), cell(c.issuer), cell(c.source)] })) },
  });

  const figures = (d) => {
    let state = d.state;
    if (d.draining && d.state !== 'draining') state += ', draining';
    const rate = (bps) => (d.rate.known ? fmtBits(bps) : 'measuring…');
    const c0 = d.certificates[0];
    return {
      'f-state': [state, `st-state-${d.state}`],
      'f-draining': [d.draining ? 'yes: new allocations are refused' : 'no', ''],
      'f-allocations': [String(d.allocations), ''],
      'f-transports': [d.transports.map((t) => `${t.transport} ${t.active}`).join(' · '), ''],
      'f-rate-peer': [rate(d.rate.to_peer_bits_per_second), ''],
      'f-rate-client': [rate(d.rate.to_client_bits_per_second), ''],
      'f-relayed': [fmtBytes(d.to_peer.bytes + d.to_client.bytes), ''],
      'f-ports': [`${d.relay_ports_in_use} of ${d.relay_ports_capacity}`, ''],
      'f-cert': [c0 ? `${certStatus(c0)}: ${certExpiry(c0)}, ${c0.source}` : 'no TLS listener', c0 ? `st-${c0.status}` : ''],
    };
  };

  // Text only (textContent): usernames and addresses come from clients.
  const setText = (el, text, cls) => {
    if (el.textContent !== text) el.textContent = text;
    if ((el.className || '') !== (cls || '')) el.className = cls || '';
  };

  const fillTable = (id, t) => {
    const table = document.getElementById(id);
    if (!table) return;
    if (t.caption !== undefined) setText(table.caption, t.caption, '');
    const body = table.tBodies[0];
    const cols = table.tHead.rows[0].cells.length;
    const rows = t.rows.length ? t.rows : null;
    const want = rows ? rows.length : 1;
    while (body.rows.length > want) body.deleteRow(-1);
    while (body.rows.length < want) body.insertRow(-1);
    if (!rows) {
      const tr = body.rows[0];
      tr.className = 'empty';
      delete tr.dataset.id;
      while (tr.cells.length > 1) tr.deleteCell(-1);
      const td = tr.cells[0] || tr.insertCell(-1);
      td.colSpan = cols;
      setText(td, table.dataset.empty, '');
      return;
    }
    rows.forEach((r, i) => {
      const tr = body.rows[i];
      tr.className = '';
      if (r.id) tr.dataset.id = r.id; else delete tr.dataset.id;
      while (tr.cells.length > r.cells.length) tr.deleteCell(-1);
      while (tr.cells.length < r.cells.length) tr.insertCell(-1);
      r.cells.forEach((c, j) => { tr.cells[j].colSpan = 1; setText(tr.cells[j], c.text, c.cls); });
    });
  };

  const render = (d) => {
    for (const [id, [text, cls]] of Object.entries(figures(d))) {
      const el = document.getElementById(id);
      if (el) setText(el, text, cls);
    }
    for (const [id, t] of Object.entries(tables(d))) fillTable(id, t);
    setText(status, `Live: updated ${d.time.slice(11, 19)} UTC, every ${poll / 1000} s.`, '');
  };

  const schedule = () => { clearTimeout(timer); if (!paused) timer = setTimeout(update, poll); };

  async function update() {
    if (document.visibilityState === 'hidden') { schedule(); return; }
    try {
      const resp = await fetch('/api/dashboard', { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } });
      if (resp.status === 401) {
        setText(status, 'Signed out (401): the admin token changed or the cookie is gone. Reload the page and sign in again.', 'error');
        return; // no more polling: it would only fail again
      }
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      render(await resp.json());
    } catch (e) {
      setText(status, `Update failed (${e.message}); retrying every ${poll / 1000} s.`, 'error');
    }
    schedule();
  }

  pauseButton.addEventListener('click', () => {
    paused = !paused;
    pauseButton.setAttribute('aria-pressed', String(paused));
    pauseButton.textContent = paused ? 'Resume updates' : 'Pause updates';
    if (paused) {
      clearTimeout(timer);
      setText(status, 'Paused: the numbers below are not updating.', '');
    } else {
      update();
    }
  });

  // For tests: the formatters, to compare with the server's.
  window.posternDashboard = { fmtBits, fmtBytes, fmtAge, fmtTime, door, certExpiry, tables, figures };
  update();
})();
