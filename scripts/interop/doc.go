// Package interop is Postern's interoperability suite: it starts `postern serve` on loopback and checks that
// real third-party clients get through it. The package has no library code; everything is in its tests.
//
// # What runs
//
// TestInterop builds ./cmd/postern once (go build into a temporary directory), starts it with UDP and TCP on one
// port (the 3478 role), TLS on a second (5349), and UDP plus a tcp+tls listener on a third (the 443 role), all on
// 127.0.0.1, with a long-term user, a REST-API secret, --relay-ip 127.0.0.1 and --allow-peer 127.0.0.0/8 (loopback
// peers are denied by default). Then:
//
//   - stun: coturn's turnutils_stunclient against each UDP listener, and a Go STUN Binding (pion/stun) over TCP
//     and TLS to each stream listener, which also checks XOR-MAPPED-ADDRESS is the client's own address;
//   - uclient: coturn's turnutils_uclient, with turnutils_peer as the echoing peer, over UDP, TCP (-t) and TLS
//     (-t -S, server certificate verified with -E), on the RFC-style and the shared ports, with long-term
//     credentials and with REST credentials (-W secret); 100 messages each, which must all come back (0 % loss).
//     The runs relay with Send/Data indications (-s): see the channel-number quirk below;
//   - browser: headless Chromium driven by driver.mjs (playwright-core, system Chromium) loads web/index.html from
//     a server on 127.0.0.1; web/relay.js opens two RTCPeerConnections with iceTransportPolicy 'relay' and a data
//     channel, sends 100 messages each way, checks them, and reads the selected pair from getStats(): both
//     candidates must be relay and the relay protocol the case's (udp, tcp, tls). Cases: turn:?transport=udp,
//     turn:?transport=tcp and turns:?transport=tcp on the RFC-style ports and on the shared port, one with REST
//     credentials, and a wrong password that must fail with "no relay candidate" and a 401 from the server.
//     One more case, ice-servers-json, hands the JSON that `postern ice-servers` prints, as it is, to
//     new RTCPeerConnection (Chromium must accept it) and must connect through one of its URLs.
//
// TestDashboardBrowser (dashboard_test.go, driven by dashboard.mjs with driver.mjs's flags) checks the admin
// dashboard in the same Chromium: a relay and admin listener with a token run in-process; without the token the
// page answers 401; /?token= signs the browser in (an HttpOnly cookie, token gone from the URL); a pion TURN
// client's allocation appears in the live-allocations table without a reload and leaves it after the client
// deletes it; the page logs no error (CSP included) and its pause button is the first Tab stop. It writes
// dashboard.png to $POSTERN_INTEROP_OUT, or the test's temporary directory (docs/dashboard.png is one).
//
// TestFleetBrowser (fleet_test.go) runs a fleet in-process on Debian's redis-server (internal/redistest): two
// nodes, one draining, and the fleet's credentials API as `postern api` serves it (cluster.Node.NewAPI). Chromium
// gets its RTCConfiguration from that API's answer, unchanged, and must connect through the node it was handed:
// every allocation of the page on the ready node, none on the draining one.
//
// Each case prints one line — PASS/FAIL/SKIP, name, transport, port, selected pair (browser), relayed addresses
// (uclient) or mapped address (STUN), time — and the run ends with "N passed, N failed" alone on a line. A failing
// case also prints the client's output and the tail of the server's log. When POSTERN_INTEROP_REPORT names a file
// the same lines are appended to it (scripts/test prints it after `go test ./...`, whose passing packages are
// otherwise silent).
//
// # Running
//
//	go test ./scripts/interop/               # skips each case whose tool is missing, naming it and how to get it
//	go test -v -run TestInterop ./scripts/interop/
//	POSTERN_INTEROP_TARGET=coturn go test -v ./scripts/interop/   # validate the suite against coturn's turnserver
//	scripts/test                             # as root: installs coturn, chromium, playwright-core; runs everything
//
// Tools: Debian's coturn package (its clients; its turnserver only for the coturn target), Debian's chromium
// (or POSTERN_CHROMIUM=/path), node 20+, and playwright-core from package.json installed with `npm ci` into
// scripts/interop/node_modules. No browser is ever downloaded. -short skips TestInterop.
//
// # Invariants
//
// Everything listens on and talks to 127.0.0.1 only, on ports picked free at run time. Every process the suite
// starts runs in its own process group and is killed with it (t.Cleanup, Pdeathsig if the test binary dies);
// every client run has a timeout. Chromium gets flags that keep it off the network (host resolver rules mapping
// every name except loopback to nothing, no QUIC, no background networking); see driver.mjs.
//
// # Chromium and turns:
//
// Chromium verifies a TURN server's certificate like any TLS peer: against the suite's self-signed certificate a
// turns: URL yields icecandidateerror 701 "Failed to establish connection" and no candidate. The suite passes
// --ignore-certificate-errors-spki-list=<base64 SHA-256 of the certificate's SubjectPublicKeyInfo>, which accepts
// that one key (tested with Chromium 156; --ignore-certificate-errors works as well but accepts anything).
// WebRTC on loopback also needs --allow-loopback-in-peer-connection (otherwise the loopback interface is not used
// to gather) and, with the resolver rules, --disable-features=WebRtcHideLocalIpsWithMdns.
//
// # Client quirks (coturn 4.6.1, Debian bookworm)
//
//   - turnutils_uclient picks channel numbers at random in 0x4000-0x7FFF (RFC 5766's range), while RFC 8656 §12
//     allows only 0x4000-0x4FFF and reserves 0x5000-0xFFFF; a server that enforces RFC 8656 answers its
//     ChannelBind with 400 most of the time, and uclient then exits 255 without sending anything. Postern follows
//     RFC 8656 here on purpose, so the uclient cases use -s; ChannelData is covered by Chromium and pion.
//   - turnutils_uclient needs a few seconds per run whatever -n is (about 2-6 s for 100 messages at -z 5 ms):
//     its progress loop ticks once a second. Runs in parallel to keep the suite short.
//   - turnutils_uclient -v prints each line twice for its first connection; it makes two allocations per client
//     even with -c; it reports nothing about the relay on failure beyond "ERROR: Cannot complete Allocation".
//   - turnutils_uclient -S alone means DTLS; TLS is -t -S. It opens several TLS connections, some offering only
//     TLS 1.0/1.1 (rejected by Go's crypto/tls: "client offered only unsupported versions"), and retries.
//   - turnutils_stunclient speaks UDP only, has no timeout (it waits forever for a silent server) and has no -h.
//   - coturn's turnserver serves TLS on its plain port too (sniffing), and with --no-dtls serves no UDP on its TLS
//     port; so for the coturn target the plain port plays the shared role. It cannot serve long-term users and a
//     REST secret at once, so that target runs two instances.
//   - turnutils_uclient over TLS takes one SSL_read for one message: a server that seals two messages in one
//     TLS record loses the second (Postern writes a record per frame, also when a batch leaves in one write).
//   - Chromium 156 (dcsctp), a few runs in a hundred, any transport: both data channels open, the offerer's 100
//     messages arrive, but the answerer never sends its own; it keeps acknowledging the offerer's data, and the
//     server's "allocation ended" lines (packets_to_peer / packets_to_client) show every packet the answerer sent
//     relayed, no data among them (83 packets, 6.7 kB, against the offerer's 133 and 17 kB). So a browser case that
//     connected and timed out runs once more on a fresh page; its report line then carries note="run twice; first
//     attempt: ..." and the test log the first attempt's server lines, and only a second failure fails the case.
//   - Debian's /usr/bin/chromium is a shell wrapper; it prints "[: ...: unexpected operator" from its
//     /etc/chromium.d/dev-shm check on some machines, which is harmless.
package interop
