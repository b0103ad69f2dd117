// Browser side of the Postern interop suite.
//
// window.runCase(config) opens two RTCPeerConnections in this page, both with iceTransportPolicy 'relay' and the
// same TURN server, so the only way their data channel can open is TURN relay to TURN relay through the server
// under test. It sends `messages` messages each way, checks every one (content and order), and reads the selected
// candidate pair from getStats(). It resolves (never rejects) with a plain object:
//
//   { ok, reason, pair, relayProtocol, sent, received, ms, iceErrors, candidates }
//
// ok is true only if both data channels opened, every message arrived intact and in order, both candidates of the
// selected pair are of type 'relay' on both peer connections, and the local candidate's relayProtocol (the
// transport between the browser and the TURN server) is config.wantRelayProtocol on both. reason says which check
// failed, with enough state (ICE states, gathered candidates, icecandidateerror events) to act on.

const DEFAULT_MESSAGES = 100;
const DEFAULT_TIMEOUT_MS = 20000;

/**
 * @param {{iceServers: RTCIceServer[], wantRelayProtocol: string, messages?: number, timeoutMs?: number}} config
 */
async function runCase(config) {
  const start = performance.now();
  const messages = config.messages ?? DEFAULT_MESSAGES;
  const timeoutMs = config.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const st = {
    iceErrors: [],
    candidates: { A: [], B: [] },
    gatheringDone: { A: false, B: false },
    sent: 0,
    received: 0,
    receivedBy: {}, // per direction ('A>B', 'B>A'): which one stalled
  };
  // A case may hand over a whole RTCConfiguration (the JSON `postern ice-servers` prints) to check that
  // RTCPeerConnection accepts it as it is.
  const rtc = config.rtcConfiguration
    ? { ...config.rtcConfiguration, iceTransportPolicy: 'relay' }
    : { iceServers: config.iceServers, iceTransportPolicy: 'relay' };
  const a = new RTCPeerConnection(rtc);
  const b = new RTCPeerConnection(rtc);
  const result = (ok, reason, extra = {}) => ({
    ok,
    reason,
    sent: st.sent,
    received: st.received,
    ms: Math.round(performance.now() - start),
    iceErrors: st.iceErrors,
    candidates: st.candidates,
    ...extra,
  });
  try {
    await withDeadline(connectAndExchange(a, b, st, messages), start + timeoutMs, () => stateOf(a, b, st));
    const sel = { A: await selectedPair(a), B: await selectedPair(b) };
    const pair = describePair(sel.A);
    const relayProtocol = sel.A.local?.relayProtocol ?? '';
    for (const side of ['A', 'B']) {
      const { local, remote } = sel[side];
      if (!local || !remote) {
        return result(false, `${side}: no selected candidate pair in getStats()`, { pair });
      }
      if (local.candidateType !== 'relay' || remote.candidateType !== 'relay') {
        return result(false, `${side}: selected pair is ${local.candidateType} -> ${remote.candidateType}, want relay -> relay`, { pair, relayProtocol });
      }
      if (config.wantRelayProtocol && local.relayProtocol !== config.wantRelayProtocol) {
        return result(false, `${side}: local relay candidate uses relayProtocol ${local.relayProtocol}, want ${config.wantRelayProtocol}`, { pair, relayProtocol });
      }
    }
    return result(true, '', { pair, relayProtocol });
  } catch (err) {
    return result(false, String(err?.message ?? err));
  } finally {
    a.close();
    b.close();
  }
}

// connectAndExchange wires A and B together (trickle ICE inside the page), opens the data channel and exchanges
// the messages. It throws with a specific reason as soon as a failure is certain rather than waiting for the
// deadline: ICE failed, or gathering completed without a single relay candidate.
async function connectAndExchange(a, b, st, messages) {
  let fail;
  const failed = new Promise((_, reject) => { fail = reject; });
  failed.catch(() => {}); // a failure after the race is settled is not an unhandled rejection
  const queues = new Map([[a, []], [b, []]]);
  const deliver = (to, cand) => {
    if (to.remoteDescription) {
      to.addIceCandidate(cand).catch((e) => st.iceErrors.push(`addIceCandidate: ${e}`));
    } else {
      queues.get(to).push(cand);
    }
  };
  const flush = (pc) => {
    for (const cand of queues.get(pc).splice(0)) deliver(pc, cand);
  };
  const wire = (pc, other, name) => {
    pc.addEventListener('icecandidate', (e) => {
      if (!e.candidate || !e.candidate.candidate) {
        st.gatheringDone[name] = true;
        if (st.candidates[name].length === 0) {
          fail(new Error(`no relay candidate: ${name} finished gathering with 0 candidates; ` +
            `icecandidateerror: ${st.iceErrors.join('; ') || 'none reported'}`));
        }
        return;
      }
      st.candidates[name].push(e.candidate.candidate);
      deliver(other, e.candidate);
    });
    pc.addEventListener('icecandidateerror', (e) => {
      st.iceErrors.push(`${name} ${e.url} ${e.errorCode} ${e.errorText}`.trim());
    });
    pc.addEventListener('iceconnectionstatechange', () => {
      if (pc.iceConnectionState === 'failed') fail(new Error(`ICE failed on ${name}; ${stateOf(a, b, st)}`));
    });
  };
  wire(a, b, 'A');
  wire(b, a, 'B');

  const dcA = a.createDataChannel('interop', { ordered: true });
  const dcB = new Promise((resolve) => b.addEventListener('datachannel', (e) => resolve(e.channel)));
  const offer = await a.createOffer();
  await a.setLocalDescription(offer);
  await b.setRemoteDescription(offer);
  flush(b);
  const answer = await b.createAnswer();
  await b.setLocalDescription(answer);
  await a.setRemoteDescription(answer);
  flush(a);

  const opened = Promise.all([opening(dcA), dcB.then(opening)]);
  const [chA, chB] = await Promise.race([opened, failed]);
  st.channels = { A: chA, B: chB };
  const both = Promise.all([
    transfer(chA, chB, 'A>B', messages, st),
    transfer(chB, chA, 'B>A', messages, st),
  ]);
  await Promise.race([both, failed]);
}

// transfer sends n numbered messages from one channel and checks that the other receives exactly those, in order.
function transfer(from, to, dir, n, st) {
  const body = (i) => `${dir}#${i}#` + 'postern'.repeat(1 + (i % 20));
  const done = new Promise((resolve, reject) => {
    let next = 0;
    to.addEventListener('message', (e) => {
      if (e.data !== body(next)) {
        reject(new Error(`${dir}: message ${next} corrupted or out of order: got ${String(e.data).slice(0, 40)}`));
        return;
      }
      st.received++;
      st.receivedBy[dir] = (st.receivedBy[dir] ?? 0) + 1;
      if (++next === n) resolve();
    });
  });
  for (let i = 0; i < n; i++) {
    from.send(body(i));
    st.sent++;
  }
  return done;
}

function opening(ch) {
  if (ch.readyState === 'open') return Promise.resolve(ch);
  return new Promise((resolve, reject) => {
    ch.addEventListener('open', () => resolve(ch), { once: true });
    ch.addEventListener('error', (e) => reject(new Error(`data channel error: ${e.error?.message ?? e}`)), { once: true });
  });
}

async function selectedPair(pc) {
  const stats = await pc.getStats();
  let pair;
  stats.forEach((r) => {
    if (r.type === 'transport' && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId);
  });
  if (!pair) {
    // Fallback for browsers without transport.selectedCandidatePairId.
    stats.forEach((r) => {
      if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') pair = r;
    });
  }
  if (!pair) return {};
  return { local: stats.get(pair.localCandidateId), remote: stats.get(pair.remoteCandidateId) };
}

function describePair({ local, remote }) {
  const end = (c) => (c ? `${c.candidateType}${c.relayProtocol ? '/' + c.relayProtocol : ''} ${c.address}:${c.port}` : '?');
  return `${end(local)} -> ${end(remote)}`;
}

function stateOf(a, b, st) {
  const one = (pc, n) => `${n}: ice=${pc.iceConnectionState} gathering=${pc.iceGatheringState} ` +
    `candidates=${st.candidates[n].length}`;
  return `${one(a, 'A')}; ${one(b, 'B')}; messages sent=${st.sent} received=${st.received} ` +
    `(A>B ${st.receivedBy['A>B'] ?? 0}, B>A ${st.receivedBy['B>A'] ?? 0}); ` +
    (st.channels ? `data channel bytes not yet sent: A ${st.channels.A.bufferedAmount}, B ${st.channels.B.bufferedAmount}; ` : '') +
    `icecandidateerror: ${st.iceErrors.join('; ') || 'none reported'}`;
}

// withDeadline settles like p, or rejects at the absolute time `at` (performance.now() clock) with the state.
function withDeadline(p, at, state) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${state()}`)), Math.max(0, at - performance.now()));
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

window.runCase = runCase;
