// Package admin is Postern's operations interface: an HTTP listener, kept
// off the public ports (127.0.0.1:9641 by default), that serves
//
//   - /metrics: Prometheus metrics under the postern_ prefix, plus the
//     standard go_ and process_ collectors;
//   - /healthz: liveness, 200 whenever the process answers;
//   - /readyz: readiness, 200 once every listener is bound, 503 while
//     starting, draining or stopping (relay.Server.State);
//   - /api/sessions: the live allocations as JSON, and DELETE to end them
//     by ID or by user (what `postern sessions` and `postern kick` use);
//   - /api/drain: GET the drain state, POST to start draining, DELETE to
//     stop (what `postern drain` uses);
//   - /: for a browser (Accept: text/html) the operator dashboard, a
//     server-rendered page whose inline script refreshes it every 2 s from
//     /api/dashboard (JSON); for anything else, and at /help, the
//     plain-text index of endpoints.
//
// Client is the matching HTTP client for the command line (postern
// sessions, kick, drain); WriteSessions prints its table and Dialable
// turns a listen address into one to dial.
//
// # Invariants
//
// The data plane pays nothing for metrics: the collector reads
// relay.Server.Stats at scrape time, which loads atomic counters and walks
// the allocation table without locking it. No metric is updated per packet
// by this package.
//
// When Config.Token is set, /metrics and /api/ require the header
// "Authorization: Bearer TOKEN" (compared in constant time); /healthz and
// /readyz never do, so that probes need no secret, and they reveal only
// the lifecycle state. A browser cannot send that header for a page load,
// so the dashboard takes the token once (/?token=TOKEN, or its sign-in
// form posting to /) and gives back an HttpOnly, SameSite=Strict cookie
// derived from the token (HMAC-SHA256), which opens / and /api/dashboard
// only; the redirect that follows drops the token from the address bar.
// The dashboard is read-only: it has no action a forged request could
// trigger. Nothing logs a token. The package holds no global state: every Server has
// its own Prometheus registry.
package admin
