package auth

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// fuzzNonceKey and t0 make nonces deterministic, so that the seed corpus in
// testdata/fuzz/FuzzCheckNonce can hold valid ones.
var fuzzNonceKey = []byte("postern fuzz nonce key, 32 bytes")

func FuzzCheckNonce(f *testing.F) {
	clk := &clock{t: t0}
	a := newAuth(f, Config{NonceKey: fuzzNonceKey, Now: clk.Now})
	v4 := netip.MustParseAddr("192.0.2.1").AsSlice()
	v6 := netip.MustParseAddr("2001:db8::1").AsSlice()
	f.Add(a.Nonce(netip.AddrFrom4([4]byte(v4))), v4, int64(0))
	f.Add(a.Nonce(netip.AddrFrom16([16]byte(v6))), v6, int64(30))
	f.Add(a.Nonce(netip.AddrFrom16([16]byte(v6))), v6, int64(601))
	f.Add("", []byte{}, int64(0))
	f.Add(strings.Repeat("A", NonceLen), v4, int64(-10))

	f.Fuzz(func(t *testing.T, nonce string, ipBytes []byte, offset int64) {
		client, ok := netip.AddrFromSlice(ipBytes)
		if !ok {
			client = netip.Addr{}
		}
		clk.t = t0.Add(time.Duration(offset%(1<<20)) * time.Second)
		err := a.CheckNonce(nonce, client)
		if err != nil {
			if !errors.Is(err, ErrStaleNonce) {
				t.Fatalf("CheckNonce(%q): error %v is not ErrStaleNonce", nonce, err)
			}
			return
		}
		// Accepted: it must be exactly what Nonce returned at its issue time,
		// within the lifetime (so it cannot be a forgery or a variant).
		if len(nonce) != NonceLen || nonce[:nonceCookieLen] != a.cookie {
			t.Fatalf("accepted nonce %q without our cookie %q", nonce, a.cookie)
		}
		raw, derr := base64.RawURLEncoding.DecodeString(nonce[nonceCookieLen:])
		if derr != nil || len(raw) != nonceRawLen || raw[0] != a.params {
			t.Fatalf("accepted undecodable nonce %q", nonce)
		}
		issued := int64(uint64(raw[1])<<48 | uint64(raw[2])<<40 | uint64(raw[3])<<32 |
			uint64(raw[4])<<24 | uint64(raw[5])<<16 | uint64(raw[6])<<8 | uint64(raw[7]))
		if age := clk.t.Unix() - issued; age > a.lifetime || age < -nonceMaxSkew {
			t.Fatalf("accepted nonce of age %ds", age)
		}
		now := clk.t
		clk.t = time.Unix(issued, 0)
		if again := a.Nonce(client); again != nonce {
			t.Fatalf("accepted %q, but Nonce at its issue time is %q", nonce, again)
		}
		clk.t = now
	})
}

func FuzzParseREST(f *testing.F) {
	for _, s := range []string{
		"1750000000:alice", "1750000000", "alice:1750000000", "1750000000:room:42",
		"9223372036854775807:x", "9223372036854775808:x", ":", "", "alice", "0:0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, username string) {
		cred, ok := parseREST(username)
		if ok {
			if cred.expiry < 0 {
				t.Fatalf("parseREST(%q): negative expiry %d", username, cred.expiry)
			}
			if cred.user == "" || !strings.Contains(username, cred.user) {
				t.Fatalf("parseREST(%q): user %q is not part of the username", username, cred.user)
			}
			// The expiry is the whole username or one side of its first colon.
			left, right, _ := strings.Cut(username, ":")
			found := false
			for _, field := range []string{username, left, right} {
				if n, err := strconv.ParseUint(field, 10, 63); err == nil && int64(n) == cred.expiry {
					found = true
				}
			}
			if !found {
				t.Fatalf("parseREST(%q): expiry %d is not a field", username, cred.expiry)
			}
		}
		// Whatever follows "EXPIRY:" is the user, colons and all.
		const exp = 1750000000
		minted := strconv.Itoa(exp) + ":" + username
		cred, ok = parseREST(minted)
		wantUser := username
		if wantUser == "" {
			wantUser = minted
		}
		if !ok || cred.expiry != exp || cred.user != wantUser {
			t.Fatalf("parseREST(%q) = %+v, %v; want {%d %q}", minted, cred, ok, exp, wantUser)
		}
	})
}

func FuzzLoadUsersLine(f *testing.F) {
	for _, s := range []string{
		"alice:secret", "  bob : 0x5d41402abc4b2a76b9719d911017c592 ", "# comment", "", "\t",
		"carol:pa:ss#word", "nocolon", ":pw", "dave:", "eve:0x1234", "eve:0x" + strings.Repeat("zz", 16),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		user, password, key, skip, err := usersLine(line)
		if skip {
			if err != nil || user != "" || password != "" || key != nil {
				t.Fatalf("usersLine(%q): skipped with results", line)
			}
			if trimmed := strings.TrimSpace(line); trimmed != "" && trimmed[0] != '#' {
				t.Fatalf("usersLine(%q): skipped a non-comment line", line)
			}
			return
		}
		if err != nil {
			return
		}
		if user == "" || strings.Contains(user, ":") || strings.TrimSpace(user) != user {
			t.Fatalf("usersLine(%q): bad user %q", line, user)
		}
		var again string
		switch {
		case key != nil && password == "" && len(key) == KeySize:
			again = user + ":0x" + hex.EncodeToString(key)
		case key == nil && password != "" && !strings.HasPrefix(password, "0x") &&
			strings.TrimSpace(password) == password:
			again = user + ":" + password
		default:
			t.Fatalf("usersLine(%q) = (%q, %q, %x): want exactly one of password and key", line, user, password, key)
		}
		u2, p2, k2, skip2, err2 := usersLine(again)
		if skip2 || err2 != nil || u2 != user || p2 != password || hex.EncodeToString(k2) != hex.EncodeToString(key) {
			t.Fatalf("round trip of %q via %q changed: (%q, %q, %x, %v)", line, again, u2, p2, k2, err2)
		}
	})
}

// FuzzPasswordAlgorithms feeds PASSWORD-ALGORITHMS and PASSWORD-ALGORITHM
// values (RFC 8489 §14.11, §14.12) to their parsers: they never panic, and
// what they accept re-encodes to the input.
func FuzzPasswordAlgorithms(f *testing.F) {
	for _, s := range []string{
		algorithmsSHA256First, algorithmsMD5First, "\x00\x02\x00\x00", "", "\x00\x01",
		"\x00\x09\x00\x05\x01\x02\x03\x04\x05\x00\x00\x00\x00\x02\x00\x00", "\x00\x09\x00\x05\x01\x02\x03\x04\x05",
		"\xff\xff\xff\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		var again []byte
		n := 0
		ok := parsePasswordAlgorithms(value, func(e algorithmEntry) {
			n++
			again = binary.BigEndian.AppendUint16(again, uint16(e.alg))
			again = binary.BigEndian.AppendUint16(again, uint16(len(e.params)))
			again = append(again, e.params...)
			for len(again)%4 != 0 && len(again) < len(value) {
				again = append(again, value[len(again)])
			}
		})
		if ok {
			if n == 0 || !bytes.Equal(again, value) {
				t.Fatalf("parsePasswordAlgorithms(%x): %d entries re-encode to %x", value, n, again)
			}
		}
		if e, ok := parseOnePasswordAlgorithm(value); ok {
			if len(value) < 4 || len(e.params) > len(value)-4 || uint16(e.alg) != binary.BigEndian.Uint16(value) {
				t.Fatalf("parseOnePasswordAlgorithm(%x) = %+v", value, e)
			}
		}
	})
}

// FuzzIntegritySHA256 feeds arbitrary messages to the
// MESSAGE-INTEGRITY-SHA256 scanner and check: neither panics nor reads
// outside the message, a message that fails to decode is never accepted,
// and a message signed with AddTo always is.
func FuzzIntegritySHA256(f *testing.F) {
	f.Add(rfc8489B1, []byte(Key(AlgorithmSHA256, matrixUser, "example.org", "TheMatrIX")))
	f.Add(rfc8489B1[:40], []byte("k"))
	f.Add([]byte("\x00\x01\x00\x08\x21\x12\xa4\x42012345678901\x00\x1c\x00\x04abcd"), []byte("k"))
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, raw, key []byte) {
		start, value, found := findIntegritySHA256(raw)
		if found && (start < stunHeaderSize || start+attrHeaderSize+len(value) > len(raw)) {
			t.Fatalf("findIntegritySHA256: attribute at %d+%d outside %d bytes", start, len(value), len(raw))
		}
		m := &stun.Message{Raw: append([]byte(nil), raw...)}
		if err := m.Decode(); err != nil {
			if err := MessageIntegritySHA256(key).Check(m); err == nil && !found {
				t.Fatal("accepted a message without the attribute")
			}
			return
		}
		_ = MessageIntegritySHA256(key).Check(m)
		if !bytes.Equal(m.Raw, raw) {
			t.Fatal("Check changed the message")
		}
		// Whatever m holds, signing it (unless it ends in FINGERPRINT or
		// already has the attribute) gives a message that verifies.
		if found || m.Contains(stun.AttrFingerprint) || len(m.Raw)+36 > 0xffff {
			return
		}
		if err := MessageIntegritySHA256(key).AddTo(m); err != nil {
			t.Fatalf("AddTo: %v", err)
		}
		if err := MessageIntegritySHA256(key).Check(decodeOrFail(t, m.Raw)); err != nil {
			t.Fatalf("signed message does not verify: %v", err)
		}
	})
}

func decodeOrFail(t *testing.T, raw []byte) *stun.Message {
	t.Helper()
	m := &stun.Message{Raw: append([]byte(nil), raw...)}
	if err := m.Decode(); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return m
}
