package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash"
	"net/netip"
)

// Stateless nonces. RFC 8489 §9.2 leaves the nonce's content to the server.
// Like the HTTP digest nonce it borrows from (RFC 7616 §3.3: a time stamp
// and a hash over it and secret data), a Postern nonce authenticates its
// own issue time and the client's IP address, so the server remembers no
// nonce it handed out:
//
//	base64url( issued[8] || HMAC-SHA256(NonceKey, issued[8] || clientIP[16])[:16] )
//
// where issued is the issue time in unix seconds, big endian, and clientIP
// the 16-byte form of the client address (IPv4 as ::ffff:a.b.c.d, zone
// dropped). That is 32 characters from [A-Za-z0-9_-]: printable ASCII, far
// below RFC 8489 §14.10's "less than 128 characters"; unpadded base64url of
// 24 bytes has no partial final group, so each nonce has one spelling. It
// does not start with the "obMatJos2" cookie of §9.2 because the security
// features it would announce are not implemented. A 128-bit MAC makes
// forging impractical; the timestamp makes nonces expire (RFC 8489 §9.2.4:
// a nonce that is "no longer valid" gets 438 Stale Nonce).
const (
	nonceTimeLen = 8
	nonceMACLen  = 16
	nonceRawLen  = nonceTimeLen + nonceMACLen
	// NonceLen is the length of every nonce Nonce returns, in characters.
	NonceLen = (nonceRawLen*8 + 5) / 6
	// nonceMaxSkew is how far in the future a nonce's issue time may lie:
	// servers sharing a NonceKey may disagree slightly about the time.
	nonceMaxSkew = 5 // seconds
)

// Reasons CheckNonce gives, prepared once so that rejecting costs no
// allocation.
var (
	errNonceMalformed = fmt.Errorf("%w: malformed", ErrStaleNonce)
	errNonceForged    = fmt.Errorf("%w: not issued by this server to this client address", ErrStaleNonce)
	errNonceExpired   = fmt.Errorf("%w: expired", ErrStaleNonce)
	errNonceFuture    = fmt.Errorf("%w: issued in the future", ErrStaleNonce)
)

// NonceGenuine reports whether err, from CheckNonce, rejects a nonce that
// this server did issue to this client address but that is no longer valid
// (expired, or dated ahead by more than the allowed skew), as opposed to a
// malformed, forged or misdirected one. A request carrying a genuine nonce
// comes from the address it was issued to (the MAC binds it), so it is no
// spoofed reflection: the relay answers its 438 outside the rate limit when
// its MESSAGE-INTEGRITY also verifies.
func NonceGenuine(err error) bool {
	return err == errNonceExpired || err == errNonceFuture
}

// nonceScratch is the per-call working memory of Nonce and CheckNonce,
// pooled so that neither allocates. The buffers live in the heap object, so
// handing them to the hash.Hash interface does not make them escape.
type nonceScratch struct {
	mac  hash.Hash // HMAC-SHA256 keyed with the NonceKey
	msg  [nonceTimeLen + 16]byte
	sum  [sha256.Size]byte
	raw  [nonceRawLen]byte
	text [NonceLen]byte
}

func (a *Authenticator) newScratch() any {
	return &nonceScratch{mac: hmac.New(sha256.New, a.nonceKey)}
}

// macFor computes the truncated MAC of (issued, client) into s.sum[:nonceMACLen].
func (s *nonceScratch) macFor(issued int64, client netip.Addr) []byte {
	binary.BigEndian.PutUint64(s.msg[:nonceTimeLen], uint64(issued))
	// As16 gives an IPv4 address in its IPv4-mapped form and ignores the
	// zone, so 192.0.2.1 and ::ffff:192.0.2.1 are the same client.
	ip := client.As16()
	copy(s.msg[nonceTimeLen:], ip[:])
	s.mac.Reset()
	s.mac.Write(s.msg[:])
	return s.mac.Sum(s.sum[:0])[:nonceMACLen]
}

// Nonce returns a fresh nonce for a client at the given IP address, for the
// NONCE attribute of a 401 or 438 response. It stores nothing.
func (a *Authenticator) Nonce(client netip.Addr) string {
	s := a.scratch.Get().(*nonceScratch)
	defer a.scratch.Put(s)
	issued := a.now().Unix()
	binary.BigEndian.PutUint64(s.raw[:nonceTimeLen], uint64(issued))
	copy(s.raw[nonceTimeLen:], s.macFor(issued, client))
	base64.RawURLEncoding.Encode(s.text[:], s.raw[:])
	return string(s.text[:])
}

// CheckNonce reports whether nonce was issued by Nonce (with this NonceKey)
// to client no longer than NonceLifetime ago. Every failure wraps
// ErrStaleNonce, to be answered with 438 and a fresh nonce (RFC 8489
// §9.2.4): malformed, forged or tampered, issued to another IP address,
// expired, or issued more than a few seconds in the future. It allocates
// nothing, also when it fails.
func (a *Authenticator) CheckNonce(nonce string, client netip.Addr) error {
	if len(nonce) != NonceLen {
		return errNonceMalformed
	}
	s := a.scratch.Get().(*nonceScratch)
	defer a.scratch.Put(s)
	copy(s.text[:], nonce)
	// The base64 decoder skips '\r' and '\n', so a 32-character input
	// containing them decodes to fewer bytes: require all 24.
	if n, err := base64.RawURLEncoding.Decode(s.raw[:], s.text[:]); err != nil || n != nonceRawLen {
		return errNonceMalformed
	}
	issued := int64(binary.BigEndian.Uint64(s.raw[:nonceTimeLen]))
	// Authenticate before trusting the time: constant-time comparison.
	if !hmac.Equal(s.macFor(issued, client), s.raw[nonceTimeLen:]) {
		return errNonceForged
	}
	now := a.now().Unix()
	switch {
	case issued > now+nonceMaxSkew:
		return errNonceFuture
	case now-issued > a.lifetime:
		return errNonceExpired
	}
	return nil
}
