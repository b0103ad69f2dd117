// Package auth decides who may use the relay and where it may send: it
// verifies STUN long-term credentials (RFC 8489 §9.2) for static users, for
// stored key hashes and for TURN REST API ephemeral credentials with several
// shared secrets, issues and checks stateless nonces, loads user files, and
// holds the peer address policy that keeps clients from relaying into private
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
// Credentials are used byte for byte. RFC 8489 §9.2.2 runs username, realm
// and password through the PRECIS OpaqueString profile (RFC 8265) before
// hashing; for printable ASCII that profile is the identity, which covers
// every username and secret that TURN REST API servers produce. Non-ASCII
// credentials must already be in the form the client sends (NFC), exactly as
// with pion/turn.
//
// MESSAGE-INTEGRITY-SHA256, PASSWORD-ALGORITHMS and USERHASH (RFC 8489 §9.2.1)
// are not implemented, so nonces never start with the "obMatJos2" security
// feature cookie that would announce them.
package auth
