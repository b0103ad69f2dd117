// Package auth decides who may use the relay and where it may send: it
// verifies STUN long-term credentials (RFC 8489 §9.2) for static users, for
// stored key hashes and for TURN REST API ephemeral credentials with several
// shared secrets, issues and checks stateless nonces, loads user files (and
// writes their NAME:0x<key> lines, UsersFileLine), and holds the peer address
// policy that keeps clients from relaying into private
// or special-purpose networks.
//
// Invariants:
//
//   - An Authenticator and a PeerPolicy are immutable after construction and
//     safe for concurrent use; New and NewPeerPolicy copy what they are given,
//     so later changes to the caller's maps or slices have no effect.
//   - Nonces carry their own state (issue time and a MAC over the time and
//     the client IP), so unauthenticated requests create no server state and
//     any process holding the same NonceKey accepts them.
//   - PeerPolicy.Allowed and Authenticator.CheckNonce allocate nothing, also
//     when they reject, so a flood of bad input creates no garbage;
//     tests assert this with testing.AllocsPerRun.
//   - Secret comparisons are constant time (hmac.Equal, here and inside
//     pion/stun's MessageIntegrity.Check).
//
// Password algorithms (RFC 8489 §9.2): every 401 and 438 offers
// PASSWORD-ALGORITHMS (SHA-256 then MD5, or MD5 then SHA-256 when stored MD5
// keys are configured) and a nonce starting with the "obMatJos2" nonce
// cookie that announces them, so RFC 8489 clients derive a SHA-256 key and
// sign with MESSAGE-INTEGRITY-SHA256, while legacy clients (browsers, pion)
// ignore both and keep using MD5 and MESSAGE-INTEGRITY. The nonce binds the
// offered list (CheckPasswordAlgorithms answers a changed one with 400: the
// bid-down protection of §9.2.1). USERHASH (§14.4) finds static users; a
// TURN REST API username cannot be recovered from its hash, so "Username
// anonymity" is announced only when no REST secrets are configured. A user
// known only by a stored MD5 key has no SHA-256 key.
//
// Credentials are prepared as RFC 8489 §9.2.2 asks, with the PRECIS
// OpaqueString profile (RFC 8265) on realm and password, and also used byte
// for byte, as browsers, pion and coturn hash them: both keys are
// candidates. For printable ASCII the two are the same, which covers every
// username and secret that TURN REST API servers produce. A static user is
// also found by the OpaqueString form of its name.
package auth
