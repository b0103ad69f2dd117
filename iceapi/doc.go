// Package iceapi serves short-lived TURN credentials over HTTP, the way
// Cloudflare's and Twilio's TURN services do: a WebRTC application's back end
// (or, with CORS, the browser itself) calls
//
//	POST /v1/ice-servers
//	Authorization: Bearer KEY
//	Content-Type: application/json
//
//	{"user": "alice", "ttl": 3600}
//
// and receives exactly the RTCConfiguration dictionary that
// `new RTCPeerConnection(...)` takes (W3C WebRTC 1.0 §4.2.1):
//
//	{"iceServers":[{"urls":["stun:...","turn:...?transport=udp",...],"username":"1767312000:alice","credential":"..."}]}
//
// The body is optional; both fields are optional. The Handler does not mint
// credentials itself: it is built from a MintFunc, so the caller decides
// which secret signs them and which URLs are listed.
//
// A fleet's handler (Config.MintRequest, package cluster's choice of node)
// also takes "region" (the caller's region, e.g. "eu") and "servers" (how
// many nodes to list, 1 to MaxServers), and is given the caller's IP
// address; without MintRequest those two members are unknown fields (400),
// as they always were.
//
// The package also derives those URLs, so that every place that hands out
// iceServers (the credentials API, `postern ice-servers`, the printout of a
// server started without credentials) lists the same ones: BoundURLs for
// the listeners a running relay has bound, SpecURLs for configured ones.
// The host in each URL is a configured name, else the address HostPolicy
// picks (external address, relay address, the listener's own, the host's
// default-route address), and a listener on every address is also listed
// with the host's global IPv6 address. RESTConfiguration fills in a TURN
// REST API credential (package auth) for a MintFunc built on one secret;
// MintJSON writes it as the iceServers JSON the commands print.
// Server is the API's own listener, with the timeouts of a tiny API and the
// relay's certificate for HTTPS.
//
// Invariants:
//
//   - Every response, success or error, is a JSON object with
//     Content-Type application/json and Cache-Control no-store (credentials
//     must not be cached by proxies or the browser).
//   - Errors are {"error": CODE, "message": TEXT}; CODE is one of the Code*
//     constants, TEXT says what to change.
//   - The API key is checked before the body is read, in constant time
//     against every configured key, so neither the body parser nor the
//     timing tells an unauthenticated caller anything.
//   - The TTL given to MintFunc is in [1s, Config.MaxTTL]: a larger request is
//     clamped, not refused, so an application asking for "a day" against a
//     stricter server still works.
//   - A Handler is immutable after New and safe for concurrent use; to change
//     keys or CORS origins, build a new one and swap it.
//   - URLs are listed without duplicates, UDP first, then TCP, then TLS
//     (clients try them in order: UDP is the cheapest, TLS the likeliest to
//     pass a firewall); IPv6 hosts are bracketed (RFC 3986). A listener on
//     port 0 cannot be listed before it is bound. No IPv6 URL names a ULA,
//     link-local or loopback address: other networks cannot reach it.
//   - Errors name settings by what they are, never by a command-line flag:
//     the caller (package node, cmd/postern) words the fix; NoAddressError marks the one
//     the operator fixes with external_ip.
//
// CORS (the Fetch standard) is off unless Config.AllowOrigins is set. CORS
// only tells browsers which pages may read the response; it is not access
// control. Any API key given to a browser is public, so an operator who
// enables CORS makes minting as open as the page that embeds the key, and
// should keep MaxTTL short and set a per-user quota on the relay.
package iceapi
