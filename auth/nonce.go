package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash"
	"net/netip"

	"github.com/pion/stun/v4"
)

// Stateless nonces. RFC 8489 §9.2 leaves the nonce's content to the server.
// Like the HTTP digest nonce it borrows from (RFC 7616 §3.3: a time stamp
// and a hash over it and secret data), a Postern nonce authenticates its
// own issue time and the client's IP address, so the server remembers no
// nonce it handed out:
//
//	cookie[13] || base64url( params[1] || issued[7] ||
//	                         HMAC-SHA256(NonceKey, cookie || params || issued || clientIP[16])[:16] )
//
// cookie is the "nonce cookie" of RFC 8489 §9.2: "To indicate that it
// supports this specification, a server MUST prepend the NONCE attribute
// value with the character string composed of "obMatJos2" concatenated with
// the (4-character) base64 [RFC4648] encoding of the 24-bit STUN Security
// Features as defined in Section 18.1" (see securityFeatures). params says
// which PASSWORD-ALGORITHMS list the response carrying the nonce offered,
// because §9.2.4 checks a request's list against "the value sent in the
// response that sent this NONCE", and the list can change with a reload
// while the nonce stays valid. issued is the issue time in unix seconds,
// big endian; clientIP the 16-byte form of the client address (IPv4 as
// ::ffff:a.b.c.d, zone dropped). The MAC covers the cookie, so a
// man in the middle who clears a feature bit makes the nonce invalid (438)
// rather than quietly turning the feature off (§9.2.1, bid-down attack
// prevention).
//
// That is 45 characters from [A-Za-z0-9_-] after the cookie's base64:
// printable ASCII, far below RFC 8489 §14.10's "less than 128 characters";
// unpadded base64url of 24 bytes has no partial final group, so each nonce
// has one spelling. A 128-bit MAC makes forging impractical; the timestamp
// makes nonces expire (RFC 8489 §9.2.4: a nonce that is "no longer valid"
// gets 438 Stale Nonce).
const (
	// nonceCookiePrefix starts every nonce cookie (RFC 8489 §9.2).
	nonceCookiePrefix = "obMatJos2"
	nonceCookieLen    = len(nonceCookiePrefix) + 4
	nonceParamsLen    = 1
	nonceTimeLen      = 7
	nonceMACLen       = 16
	nonceRawLen       = nonceParamsLen + nonceTimeLen + nonceMACLen
	nonceBodyLen      = (nonceRawLen*8 + 5) / 6
	// NonceLen is the length of every nonce Nonce returns, in characters.
	NonceLen = nonceCookieLen + nonceBodyLen
	// nonceMaxSkew is how far in the future a nonce's issue time may lie:
	// servers sharing a NonceKey may disagree slightly about the time.
	nonceMaxSkew = 5 // seconds
	// nonceMaxIssued is the largest issue time nonceTimeLen bytes hold.
	nonceMaxIssued = 1<<(8*nonceTimeLen) - 1
)

// The STUN Security Features (RFC 8489 §18.1): "Bit 0: Password
// algorithms, Bit 1: Username anonymity". Where bit 0 lies is disputed: §9.2
// and §18.1 as published say "with bit 0 as the most significant bit of the
// first byte", Errata 6290 to §18.1 says "starting from the least
// significant side", and clients differ (libjuice reads the least
// significant bits, others the most significant). Postern sets each feature
// under both readings, so every client sees the features it offers; the two
// other bits this sets are unassigned under either reading and carry no
// meaning.
const (
	featurePasswordAlgorithms uint32 = 1<<23 | 1<<0
	featureUsernameAnonymity  uint32 = 1<<22 | 1<<1
)

// The nonce cookies Postern sends: password algorithms always (every
// challenge carries PASSWORD-ALGORITHMS), username anonymity when every
// user can be found by USERHASH (see New).
const (
	// cookiePasswordAlgorithms is "obMatJos2" + base64(0x800001).
	cookiePasswordAlgorithms = nonceCookiePrefix + "gAAB"
	// cookieAnonymity is "obMatJos2" + base64(0xC00003).
	cookieAnonymity = nonceCookiePrefix + "wAAD"
)

// cookieFeatures returns the features of one of our cookies, or false.
func cookieFeatures(cookie string) (uint32, bool) {
	switch cookie {
	case cookiePasswordAlgorithms:
		return featurePasswordAlgorithms, true
	case cookieAnonymity:
		return featurePasswordAlgorithms | featureUsernameAnonymity, true
	}
	return 0, false
}

// The PASSWORD-ALGORITHMS values a challenge offers (RFC 8489 §14.11), "in
// preferential order" (§9.2.4), each algorithm without parameters. A client
// takes "the first algorithm supported on the list" (§9.2.5), and the first
// challenge comes before the server knows the user, so a server with
// stored MD5 keys (which cannot make a SHA-256 key) offers MD5 first:
// offering SHA-256 first would lock those users out of RFC 8489 clients.
// The nonce's params byte names the list.
const (
	paramsSHA256First byte = 1
	paramsMD5First    byte = 2

	algorithmsSHA256First = "\x00\x02\x00\x00\x00\x01\x00\x00"
	algorithmsMD5First    = "\x00\x01\x00\x00\x00\x02\x00\x00"
)

// algorithmsOf returns the PASSWORD-ALGORITHMS value a nonce's params byte
// names, or false.
func algorithmsOf(params byte) (string, bool) {
	switch params {
	case paramsSHA256First:
		return algorithmsSHA256First, true
	case paramsMD5First:
		return algorithmsMD5First, true
	}
	return "", false
}

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
	msg  [nonceCookieLen + nonceParamsLen + nonceTimeLen + 16]byte
	sum  [sha256.Size]byte
	raw  [nonceRawLen]byte
	text [NonceLen]byte
}

func (a *Authenticator) newScratch() any {
	return &nonceScratch{mac: hmac.New(sha256.New, a.nonceKey)}
}

// macFor computes the truncated MAC of (cookie, params and issued time,
// client) into s.sum[:nonceMACLen]; s.raw holds params and issued time.
func (s *nonceScratch) macFor(cookie []byte, client netip.Addr) []byte {
	n := copy(s.msg[:], cookie)
	n += copy(s.msg[n:], s.raw[:nonceParamsLen+nonceTimeLen])
	// As16 gives an IPv4 address in its IPv4-mapped form and ignores the
	// zone, so 192.0.2.1 and ::ffff:192.0.2.1 are the same client.
	ip := client.As16()
	copy(s.msg[n:], ip[:])
	s.mac.Reset()
	s.mac.Write(s.msg[:])
	return s.mac.Sum(s.sum[:0])[:nonceMACLen]
}

// putIssued writes the params byte and the issue time into s.raw.
func (s *nonceScratch) putIssued(params byte, issued int64) {
	var t [8]byte
	binary.BigEndian.PutUint64(t[:], uint64(issued))
	s.raw[0] = params
	copy(s.raw[nonceParamsLen:nonceParamsLen+nonceTimeLen], t[8-nonceTimeLen:])
}

// issued reads the issue time from s.raw.
func (s *nonceScratch) issued() int64 {
	var t [8]byte
	copy(t[8-nonceTimeLen:], s.raw[nonceParamsLen:nonceParamsLen+nonceTimeLen])
	return int64(binary.BigEndian.Uint64(t[:]))
}

// Nonce returns a fresh nonce for a client at the given IP address, for the
// NONCE attribute of a 401 or 438 response, which must also carry
// PasswordAlgorithms. It stores nothing.
func (a *Authenticator) Nonce(client netip.Addr) string {
	s := a.scratch.Get().(*nonceScratch)
	defer a.scratch.Put(s)
	issued := min(max(a.now().Unix(), 0), nonceMaxIssued)
	s.putIssued(a.params, issued)
	n := copy(s.text[:], a.cookie)
	copy(s.raw[nonceParamsLen+nonceTimeLen:], s.macFor(s.text[:n], client))
	base64.RawURLEncoding.Encode(s.text[nonceCookieLen:], s.raw[:])
	return string(s.text[:])
}

// PasswordAlgorithms returns the PASSWORD-ALGORITHMS attribute (RFC 8489
// §14.11) that goes with Nonce in every 401 and 438 response: §9.2.4 says
// the 401s "MUST include a PASSWORD-ALGORITHMS attribute" and so must a 438,
// and a client that finds the cookie's "Password algorithms" bit without
// the attribute "MUST NOT retry the request" (§9.2.5).
func (a *Authenticator) PasswordAlgorithms() stun.Setter {
	list, _ := algorithmsOf(a.params)
	return stun.RawAttribute{Type: stun.AttrPasswordAlgorithms, Value: []byte(list)}
}

// openNonce checks that nonce is well formed and was issued by Nonce (with
// this NonceKey) to client, and returns its params byte, features and issue
// time; s.text and s.raw hold it afterwards. It does not look at the time.
// It allocates nothing.
func (a *Authenticator) openNonce(s *nonceScratch, nonce string, client netip.Addr) (params byte, features uint32, issued int64, err error) {
	if len(nonce) != NonceLen {
		return 0, 0, 0, errNonceMalformed
	}
	copy(s.text[:], nonce)
	features, ok := cookieFeatures(nonce[:nonceCookieLen])
	if !ok {
		return 0, 0, 0, errNonceMalformed
	}
	// The base64 decoder skips '\r' and '\n', so an input containing them
	// decodes to fewer bytes: require all of them.
	if n, err := base64.RawURLEncoding.Decode(s.raw[:], s.text[nonceCookieLen:]); err != nil || n != nonceRawLen {
		return 0, 0, 0, errNonceMalformed
	}
	// Authenticate before trusting the time or the params: constant-time
	// comparison.
	if !hmac.Equal(s.macFor(s.text[:nonceCookieLen], client), s.raw[nonceParamsLen+nonceTimeLen:]) {
		return 0, 0, 0, errNonceForged
	}
	return s.raw[0], features, s.issued(), nil
}

// CheckNonce reports whether nonce was issued by Nonce (with this NonceKey)
// to client no longer than NonceLifetime ago. Every failure wraps
// ErrStaleNonce, to be answered with 438 and a fresh nonce (RFC 8489
// §9.2.4): malformed, forged or tampered (the nonce cookie included),
// issued to another IP address, expired, or issued more than a few seconds
// in the future. It allocates nothing, also when it fails.
func (a *Authenticator) CheckNonce(nonce string, client netip.Addr) error {
	s := a.scratch.Get().(*nonceScratch)
	defer a.scratch.Put(s)
	_, _, issued, err := a.openNonce(s, nonce, client)
	if err != nil {
		return err
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

// CheckPasswordAlgorithms applies the bid-down check of RFC 8489 §9.2.4 to
// a request whose NONCE nonce was sent to client:
//
//	If the NONCE attribute starts with the "nonce cookie" with the STUN
//	Security Feature "Password algorithms" bit set to 1, [...] If the
//	request contains neither the PASSWORD-ALGORITHMS nor the
//	PASSWORD-ALGORITHM algorithm, then the request is processed as though
//	PASSWORD-ALGORITHM were MD5. Otherwise, unless (1) PASSWORD-ALGORITHM
//	and PASSWORD-ALGORITHMS are both present, (2) PASSWORD-ALGORITHMS
//	matches the value sent in the response that sent this NONCE, and (3)
//	PASSWORD-ALGORITHM matches one of the entries in PASSWORD-ALGORITHMS,
//	the server MUST generate an error response with an error code of 400
//	(Bad Request).
//
// The list "sent in the response that sent this NONCE" is the one the
// nonce's params byte names, so the check holds across reloads. A nonce
// this server did not issue (to this client) has no such response: the
// check passes and CheckNonce answers 438. Errors wrap ErrPasswordAlgorithm.
func (a *Authenticator) CheckPasswordAlgorithms(m *stun.Message, nonce string, client netip.Addr) error {
	s := a.scratch.Get().(*nonceScratch)
	params, features, _, err := a.openNonce(s, nonce, client)
	a.scratch.Put(s)
	if err != nil || features&featurePasswordAlgorithms == 0 {
		return nil
	}
	offered, ok := algorithmsOf(params)
	if !ok {
		return nil // not a list we know: not one we sent
	}
	list, listErr := m.Get(stun.AttrPasswordAlgorithms)
	one, oneErr := m.Get(stun.AttrPasswordAlgorithm)
	switch {
	case listErr != nil && oneErr != nil:
		return nil // legacy client: MD5 with MESSAGE-INTEGRITY
	case listErr != nil:
		return fmt.Errorf("%w: PASSWORD-ALGORITHM without PASSWORD-ALGORITHMS", ErrPasswordAlgorithm)
	case oneErr != nil:
		return fmt.Errorf("%w: PASSWORD-ALGORITHMS without PASSWORD-ALGORITHM", ErrPasswordAlgorithm)
	case string(list) != offered:
		return fmt.Errorf("%w: PASSWORD-ALGORITHMS %x differs from the %x sent with this nonce",
			ErrPasswordAlgorithm, list, offered)
	}
	chosen, ok := parseOnePasswordAlgorithm(one)
	if !ok {
		return fmt.Errorf("%w: malformed PASSWORD-ALGORITHM %x", ErrPasswordAlgorithm, one)
	}
	found := false
	parsePasswordAlgorithms([]byte(offered), func(e algorithmEntry) {
		found = found || e.alg == chosen.alg && string(e.params) == string(chosen.params)
	})
	if !found {
		return fmt.Errorf("%w: PASSWORD-ALGORITHM %v is not in PASSWORD-ALGORITHMS", ErrPasswordAlgorithm, chosen.alg)
	}
	return nil
}
