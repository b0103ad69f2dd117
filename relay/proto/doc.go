// Package proto is the TURN wire format used by Postern: the TURN attributes
// of RFC 8656 §18 on top of pion/stun messages, XOR-encoded transport
// addresses without net.IP, ChannelData framing (RFC 8656 §12.4), Data
// indications built in place (RFC 8656 §11.5), first-byte demultiplexing
// (RFC 7983) and a stream framer for TURN over TCP and TLS (RFC 8656 §12.5).
//
// Invariants:
//
//   - The functions marked HOT (GetXORAddress, ParseChannelData,
//     PutChannelDataHeader, PutDataIndication, Classify, Framer.Next in the
//     steady state) allocate nothing and take no locks; tests assert this with
//     testing.AllocsPerRun. GetXORAddress and ParseChannelData also allocate
//     nothing when they fail: they return the package's sentinel errors
//     unwrapped, so a flood of malformed packets cannot create garbage.
//   - Nothing here copies payloads: Data.GetFrom and ParseChannelData return
//     slices of the caller's buffer, and PutDataIndication writes the STUN
//     header into headroom in front of a payload already in place.
//   - Decoders never trust a length field: every size is checked against the
//     bytes actually present, sizes are computed in int (never uint16, whose
//     wrap-around pinned a CPU in older pion and coturn #1837), and the Framer
//     has hard caps, so malformed input yields an error, never a panic or a
//     loop.
//   - The package holds no mutable state; values are safe to share only as
//     documented (a Framer belongs to one reader goroutine).
//
// Transaction IDs: callers fill them in. NewTransactionID draws one from a
// caller-owned math/rand/v2 ChaCha8 (seeded from crypto/rand) without
// allocating, for Data indications sent from a relay loop.
package proto
