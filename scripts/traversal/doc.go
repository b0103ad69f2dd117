// Package traversal is Postern's firewall traversal test: in network namespaces it creates itself, a client
// behind a restrictive firewall must still reach Postern, with `postern probe` and with headless Chromium. The
// package has no library code; everything is in its test.
//
// # Topology
//
// Three namespaces, joined by two veth pairs, all on addresses the test owns:
//
//	client 10.99.1.2 --- 10.99.1.1 firewall 10.99.2.1 --- 10.99.2.2 server
//
// The server namespace runs `postern serve` with its default listeners (UDP and TCP 3478, TLS 5349, UDP 443,
// tcp+tls 443), a test certificate, the self-test page (--selftest), and --allow-peer for its own subnet
// (relayed addresses there are private);
// with no users configured it generates a secret and prints the iceServers JSON, whose URLs (Postern's defaults)
// and credential the clients use as they are. The firewall namespace forwards between the two with an nftables
// forward chain whose policy is drop, plus one of:
//
//   - open: everything from the client may pass;
//   - no-udp: every TCP connection from the client may pass, no UDP;
//   - tcp-443-only: only TCP to port 443;
//   - proxy-only: nothing; the firewall runs Debian's tinyproxy on 10.99.1.1:8888, allowing CONNECT to port 443
//     only, and the client must go through it.
//
// In each case, `postern probe` from the client namespace must report exactly the doors the firewall leaves
// open (and a working relay through them), and headless Chromium in the client namespace (the interop suite's
// driver, scripts/interop/driver.mjs with web/relay.js: two RTCPeerConnections with iceTransportPolicy 'relay'
// exchanging data) must connect with all of Postern's default ICE URLs, over TURN/TCP (but in the open network,
// where ICE rightly picks UDP).
//
// In every network Chromium also opens the self-test page (package selftest) that Postern's tcp+tls listener on
// 443 shows a browser, https://10.99.2.2/ (through the proxy in proxy-only), driven by scripts/interop/selftest.mjs.
// The page must reach the network's verdict, and each door's row must say what `postern probe` found from the
// same namespace: TURN works exactly where the probe relayed, STUN (UDP doors) exactly where its Binding was
// answered; both take their doors from probe.Doors. Should the page miss a door the probe got through (its 8 s
// per candidate on a loaded machine), it runs once more and says so; a door it finds open that the firewall
// closes fails at once. Screenshots, selftest-NETWORK.png, go to $POSTERN_TRAVERSAL_OUT, or else the test's
// temporary directory (removed at the end). POSTERN_TRAVERSAL_CASE=NAME runs one network only.
//
// # Running
//
//	sudo go test -v ./scripts/traversal/
//
// It needs root (namespaces, nftables), iproute2, nftables, tinyproxy, Debian's chromium (or POSTERN_CHROMIUM),
// node 20+ and playwright-core installed in scripts/interop (`npm ci` there; scripts/test does it). Elsewhere, or
// with -short, it skips, naming what is missing.
//
// # Invariants
//
// The test touches nothing outside the namespaces it creates (named with its process id) and removes them at
// the end; every process it starts runs in a process group of its own and is killed with it, and Chromium by
// its unique profile directory. Nothing talks to any address but the test's own.
package traversal
