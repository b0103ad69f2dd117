package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/pion/stun/v4"
	"golang.org/x/text/secure/precis"
)

// The RFC 8489 security features: password algorithms (§9.2.2, §14.11,
// §14.12, §18.5), MESSAGE-INTEGRITY-SHA256 (§14.6) and USERHASH (§14.4).
// pion/stun v4 names the attribute types but has no code for them, so the
// encoders, parsers and the HMAC live here.

// PasswordAlgorithm is a number of the IANA "STUN Password Algorithms"
// registry (RFC 8489 §18.5): it selects the hash of the long-term key.
type PasswordAlgorithm uint16

const (
	// AlgorithmMD5 is the MD5 password algorithm (RFC 8489 §18.5.1.1), the
	// one used when a request names none: a 16-byte key.
	AlgorithmMD5 PasswordAlgorithm = 0x0001
	// AlgorithmSHA256 is the SHA-256 password algorithm (RFC 8489
	// §18.5.1.2): a 32-byte key.
	AlgorithmSHA256 PasswordAlgorithm = 0x0002
)

// String returns the registry's name of the algorithm.
func (p PasswordAlgorithm) String() string {
	switch p {
	case AlgorithmMD5:
		return "MD5"
	case AlgorithmSHA256:
		return "SHA-256"
	}
	return fmt.Sprintf("0x%04x", uint16(p))
}

// Integrity tells which message-integrity attributes a response carries.
type Integrity uint8

const (
	// IntegritySHA1 is MESSAGE-INTEGRITY, HMAC-SHA1 (RFC 8489 §14.5).
	IntegritySHA1 Integrity = 1 << iota
	// IntegritySHA256 is MESSAGE-INTEGRITY-SHA256, HMAC-SHA256 (§14.6).
	IntegritySHA256
)

const (
	// UserhashSize is the size of a USERHASH value, a SHA-256 digest
	// (RFC 8489 §14.4).
	UserhashSize = sha256.Size
	// integritySHA256Size is the size of the MESSAGE-INTEGRITY-SHA256
	// value we send and accept. RFC 8489 §14.6: "The value must be the full
	// 32 bytes unless the STUN Usage explicitly specifies that truncation is
	// allowed"; TURN (RFC 8656) does not.
	integritySHA256Size = sha256.Size
	stunHeaderSize      = 20
	attrHeaderSize      = 4
)

// ErrPasswordAlgorithm means the request's PASSWORD-ALGORITHM and
// PASSWORD-ALGORITHMS do not match what the server offered with its nonce,
// or name an algorithm the server does not support: RFC 8489 §9.2.4 answers
// it with 400 (Bad Request). It is how a bid-down attack shows.
var ErrPasswordAlgorithm = errors.New("auth: password algorithm negotiation failed")

// Key returns the long-term key of RFC 8489 §9.2.2 and §18.5.1 for the
// given password algorithm: the algorithm's hash of
// username ":" realm ":" password, with the strings used as given; callers
// apply OpaqueString first where the RFC asks for it.
func Key(alg PasswordAlgorithm, username, realm, password string) []byte {
	if alg == AlgorithmMD5 {
		return LongTermKey(username, realm, password)
	}
	h := sha256.New()
	h.Write([]byte(username))
	h.Write([]byte{':'})
	h.Write([]byte(realm))
	h.Write([]byte{':'})
	h.Write([]byte(password))
	return h.Sum(make([]byte, 0, sha256.Size))
}

// Userhash returns the USERHASH value of RFC 8489 §14.4,
// "userhash = SHA-256(OpaqueString(username) ":" OpaqueString(realm))",
// with the strings used as given.
func Userhash(username, realm string) [UserhashSize]byte {
	h := sha256.New()
	h.Write([]byte(username))
	h.Write([]byte{':'})
	h.Write([]byte(realm))
	var sum [UserhashSize]byte
	h.Sum(sum[:0])
	return sum
}

// OpaqueString applies the PRECIS OpaqueString profile (RFC 8265 §4.2)
// that RFC 8489 §9.2.2 and §14.4 ask for on usernames, realms and
// passwords. It is the identity on printable ASCII; it maps non-ASCII
// spaces to U+0020 and normalises to NFC; it refuses control characters,
// default-ignorable code points (such as U+00AD) and the empty string.
func OpaqueString(s string) (string, error) {
	out, err := precis.OpaqueString.String(s)
	if err != nil {
		return "", fmt.Errorf("auth: OpaqueString(%q): %w", s, err)
	}
	return out, nil
}

// forms returns s and, when it differs and is valid, OpaqueString(s): the
// spellings of a configured string a client may have hashed. Browsers and
// coturn use credentials byte for byte, RFC 8489 clients prepare them, so
// the server accepts both (they are the same for printable ASCII).
func forms(s string) []string {
	if p, err := precis.OpaqueString.String(s); err == nil && p != s {
		return []string{s, p}
	}
	return []string{s}
}

// MessageIntegritySHA256 is the MESSAGE-INTEGRITY-SHA256 attribute
// (RFC 8489 §14.6) keyed with a long-term key, in the style of pion's
// stun.MessageIntegrity: AddTo appends it, Check verifies it.
type MessageIntegritySHA256 []byte

// AddTo appends MESSAGE-INTEGRITY-SHA256 to m. RFC 8489 §14.6: "The text
// used as input to HMAC is the STUN message, up to and including the
// attribute preceding the MESSAGE-INTEGRITY-SHA256 attribute. The Length
// field of the STUN message header is adjusted to point to the end of the
// MESSAGE-INTEGRITY-SHA256 attribute." It may follow MESSAGE-INTEGRITY;
// FINGERPRINT must come after it.
func (k MessageIntegritySHA256) AddTo(m *stun.Message) error {
	for _, a := range m.Attributes {
		if a.Type == stun.AttrFingerprint {
			return stun.ErrFingerprintBeforeIntegrity
		}
	}
	end := stunHeaderSize + int(m.Length)
	if len(m.Raw) < end {
		return errors.New("auth: MESSAGE-INTEGRITY-SHA256 on a message shorter than its header says")
	}
	// Raw may hold bytes past Length; m.Add overwrites them.
	sum := integritySHA256(k, m.Raw[:end], int(m.Length)+attrHeaderSize+integritySHA256Size)
	m.Add(stun.AttrMessageIntegritySHA256, sum[:])
	return nil
}

// Check verifies the first MESSAGE-INTEGRITY-SHA256 of m, which must hold
// the full 32 bytes. Unlike pion's MessageIntegrity.Check it leaves m.Raw
// untouched: the header's length is adjusted in a copy.
func (k MessageIntegritySHA256) Check(m *stun.Message) error {
	start, value, ok := findIntegritySHA256(m.Raw)
	if !ok {
		return fmt.Errorf("%w: no MESSAGE-INTEGRITY-SHA256", ErrBadIntegrity)
	}
	if len(value) != integritySHA256Size {
		return fmt.Errorf("%w: MESSAGE-INTEGRITY-SHA256 of %d bytes, want %d", ErrBadIntegrity,
			len(value), integritySHA256Size)
	}
	sum := integritySHA256(k, m.Raw[:start], start-stunHeaderSize+attrHeaderSize+integritySHA256Size)
	if !hmac.Equal(sum[:], value) {
		return fmt.Errorf("%w: MESSAGE-INTEGRITY-SHA256 mismatch", ErrBadIntegrity)
	}
	return nil
}

// integritySHA256 is HMAC-SHA256(key, msg) with the header's length field
// read as length.
func integritySHA256(key, msg []byte, length int) [sha256.Size]byte {
	var header [stunHeaderSize]byte
	copy(header[:], msg)
	binary.BigEndian.PutUint16(header[2:4], uint16(length))
	mac := hmac.New(sha256.New, key)
	mac.Write(header[:])
	mac.Write(msg[stunHeaderSize:])
	var sum [sha256.Size]byte
	mac.Sum(sum[:0])
	return sum
}

// findIntegritySHA256 walks the attributes of the STUN message raw and
// returns the offset of its first MESSAGE-INTEGRITY-SHA256 attribute and
// that attribute's value. It reads raw itself rather than pion's decoded
// list, which drops attributes between MESSAGE-INTEGRITY and
// MESSAGE-INTEGRITY-SHA256 that the HMAC still covers. It never reads past
// raw or the header's length.
func findIntegritySHA256(raw []byte) (start int, value []byte, ok bool) {
	if len(raw) < stunHeaderSize {
		return 0, nil, false
	}
	end := stunHeaderSize + int(binary.BigEndian.Uint16(raw[2:4]))
	if end > len(raw) {
		return 0, nil, false
	}
	for off := stunHeaderSize; off+attrHeaderSize <= end; {
		typ := stun.AttrType(binary.BigEndian.Uint16(raw[off:]))
		n := int(binary.BigEndian.Uint16(raw[off+2:]))
		if off+attrHeaderSize+n > end {
			return 0, nil, false
		}
		if typ == stun.AttrMessageIntegritySHA256 {
			return off, raw[off+attrHeaderSize : off+attrHeaderSize+n], true
		}
		off += attrHeaderSize + (n+3)&^3
	}
	return 0, nil, false
}

// algorithmEntry is one entry of PASSWORD-ALGORITHMS, or the value of
// PASSWORD-ALGORITHM: an algorithm number and its parameters (RFC 8489
// §14.11, §14.12). params aliases the message.
type algorithmEntry struct {
	alg    PasswordAlgorithm
	params []byte
}

// parsePasswordAlgorithm parses one algorithm entry at the start of b (RFC
// 8489 §14.12: "Algorithm: 16 bits, Algorithm Parameters Length: 16 bits,
// Algorithm Parameters: variable", the parameters padded to 4 bytes) and
// returns it and the bytes after it, padding included. The padding of the
// last entry of a value may be absent.
func parsePasswordAlgorithm(b []byte) (e algorithmEntry, rest []byte, ok bool) {
	if len(b) < 4 {
		return algorithmEntry{}, nil, false
	}
	e.alg = PasswordAlgorithm(binary.BigEndian.Uint16(b))
	n := int(binary.BigEndian.Uint16(b[2:]))
	b = b[4:]
	if n > len(b) {
		return algorithmEntry{}, nil, false
	}
	e.params = b[:n]
	padded := (n + 3) &^ 3
	if padded > len(b) {
		padded = len(b) // the value's last entry: its padding is the attribute's
	}
	return e, b[padded:], true
}

// parsePasswordAlgorithms parses a PASSWORD-ALGORITHMS value (RFC 8489
// §14.11): a non-empty list of algorithm entries filling the whole value.
// It calls yield for each entry, in order, and reports whether the value
// was well formed.
func parsePasswordAlgorithms(b []byte, yield func(algorithmEntry)) bool {
	if len(b) == 0 {
		return false
	}
	for len(b) > 0 {
		e, rest, ok := parsePasswordAlgorithm(b)
		if !ok {
			return false
		}
		if yield != nil {
			yield(e)
		}
		b = rest
	}
	return true
}

// parseOnePasswordAlgorithm parses a PASSWORD-ALGORITHM value: exactly one
// entry (RFC 8489 §14.12).
func parseOnePasswordAlgorithm(b []byte) (algorithmEntry, bool) {
	e, rest, ok := parsePasswordAlgorithm(b)
	if !ok || len(rest) != 0 {
		return algorithmEntry{}, false
	}
	return e, true
}
