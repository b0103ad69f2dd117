package auth

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/pion/stun/v4"
)

// matrixUser is the username of RFC 5769 §2.4 and RFC 8489 Appendix B.1.
const matrixUser = "\u30DE\u30C8\u30EA\u30C3\u30AF\u30B9"

// rfc8489B1 is the sample request of RFC 8489 Appendix B.1 ("Sample Request
// with Long-Term Authentication with MESSAGE-INTEGRITY-SHA256 and
// USERHASH") as corrected by Errata 6268: USERHASH, NONCE
// "obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA", REALM "example.org",
// PASSWORD-ALGORITHM SHA-256 and MESSAGE-INTEGRITY-SHA256, for username
// "マトリックス" and password "TheMatrIX". The published text has a message
// length of 0x9c, 20 bytes more than its attributes fill, and no
// PASSWORD-ALGORITHM, so it does not decode; the errata adds the attribute
// (the length becomes 0x90) and the HMAC that goes with it.
var rfc8489B1 = []byte("\x00\x01\x00\x90" +
	"\x21\x12\xa4\x42" +
	"\x78\xad\x34\x33\xc6\xad\x72\xc0\x29\xda\x41\x2e" +
	"\x00\x1e\x00\x20" + // USERHASH
	"\x4a\x3c\xf3\x8f\xef\x69\x92\xbd\xa9\x52\xc6\x78\x04\x17\xda\x0f" +
	"\x24\x81\x94\x15\x56\x9e\x60\xb2\x05\xc4\x6e\x41\x40\x7f\x17\x04" +
	"\x00\x15\x00\x29" + // NONCE, 41 bytes and 3 of padding
	"obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA\x00\x00\x00" +
	"\x00\x14\x00\x0b" + // REALM
	"example.org\x00" +
	"\x00\x1d\x00\x04" + // PASSWORD-ALGORITHM: SHA-256, no parameters
	"\x00\x02\x00\x00" +
	"\x00\x1c\x00\x20" + // MESSAGE-INTEGRITY-SHA256
	"\xb5\xc7\xbf\x00\x5b\x6c\x52\xa2\x1c\x51\xc5\xe8\x92\xf8\x19\x24" +
	"\x13\x62\x96\xcb\x92\x7c\x43\x14\x93\x09\x27\x8c\xc6\x51\x8e\x65")

func decode(t testing.TB, raw []byte) *stun.Message {
	t.Helper()
	m := &stun.Message{Raw: append([]byte(nil), raw...)}
	if err := m.Decode(); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return m
}

// TestRFC8489SampleB1 checks key derivation, USERHASH and
// MESSAGE-INTEGRITY-SHA256 against the RFC 8489 B.1 test vector, and that
// Verify accepts it and AddTo rebuilds it byte for byte.
func TestRFC8489SampleB1(t *testing.T) {
	m := decode(t, rfc8489B1)
	wantHash, _ := m.Get(stun.AttrUserhash)
	if got := Userhash(matrixUser, "example.org"); !bytes.Equal(got[:], wantHash) {
		t.Fatalf("Userhash = %x, want %x", got, wantHash)
	}
	key := Key(AlgorithmSHA256, matrixUser, "example.org", "TheMatrIX")
	if len(key) != 32 {
		t.Fatalf("SHA-256 key is %d bytes", len(key))
	}
	if err := MessageIntegritySHA256(key).Check(m); err != nil {
		t.Fatalf("MESSAGE-INTEGRITY-SHA256: %v", err)
	}
	md5Key := Key(AlgorithmMD5, matrixUser, "example.org", "TheMatrIX")
	if err := MessageIntegritySHA256(md5Key).Check(m); !errors.Is(err, ErrBadIntegrity) {
		t.Fatalf("MD5 key accepted: %v", err)
	}
	if !bytes.Equal(m.Raw, rfc8489B1) {
		t.Fatal("Check changed the message")
	}

	// The same request built from its parts.
	var tid [stun.TransactionIDSize]byte
	copy(tid[:], rfc8489B1[8:20])
	rebuilt := build(t, stun.NewTransactionIDSetter(tid), stun.BindingRequest,
		stun.RawAttribute{Type: stun.AttrUserhash, Value: wantHash},
		stun.NewNonce("obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA"), stun.NewRealm("example.org"),
		stun.RawAttribute{Type: stun.AttrPasswordAlgorithm, Value: []byte{0, 2, 0, 0}},
		MessageIntegritySHA256(key))
	if !bytes.Equal(rebuilt.Raw, rfc8489B1) {
		t.Fatalf("rebuilt\n%x\nwant\n%x", rebuilt.Raw, rfc8489B1)
	}

	// Verify finds the user by USERHASH, with the password or a key file
	// (the SHA-256 key needs the password: a stored MD5 key cannot verify).
	id, err := newAuth(t, Config{Realm: "example.org", Users: map[string]string{matrixUser: "TheMatrIX"}}).Verify(m)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if id.Username != matrixUser || id.User != matrixUser || !bytes.Equal(id.Key, key) ||
		id.Algorithm != AlgorithmSHA256 || id.Integrity != IntegritySHA256 {
		t.Fatalf("Verify = %+v", id)
	}
	keyOnly := newAuth(t, Config{Realm: "example.org", Keys: map[string][]byte{matrixUser: md5Key}})
	if _, err := keyOnly.Verify(m); !errors.Is(err, ErrBadIntegrity) || !strings.Contains(err.Error(), "MD5") {
		t.Fatalf("key-only user with SHA-256: err = %v", err)
	}

	// The vector's password "The<U+00AD>M<U+00AA>tr<U+2168>" becomes
	// "TheMatrIX" under SASLprep (RFC 4013, which RFC 5389 used), not under
	// OpaqueString: PRECIS disallows U+00AD. So it cannot be configured in
	// its unprepared form.
	if p, err := OpaqueString("The\u00adM\u00aatr\u2168"); err == nil {
		t.Fatalf("OpaqueString accepted the soft hyphen: %q", p)
	}
}

func TestKey(t *testing.T) {
	// RFC 8489 §9.2.2: "if the username is 'user', the realm is 'realm',
	// and the password is 'pass', then the 16-byte HMAC key would be [...]
	// 0x8493fbc53ba582fb4c044c456bdc40eb".
	if got := hex.EncodeToString(Key(AlgorithmMD5, "user", "realm", "pass")); got != "8493fbc53ba582fb4c044c456bdc40eb" {
		t.Errorf("MD5 key = %s", got)
	}
	// §18.5.1.2: the same input, hashed with SHA-256.
	want := sha256.Sum256([]byte("user:realm:pass"))
	if got := Key(AlgorithmSHA256, "user", "realm", "pass"); !bytes.Equal(got, want[:]) {
		t.Errorf("SHA-256 key = %x, want %x", got, want)
	}
	if AlgorithmMD5.String() != "MD5" || AlgorithmSHA256.String() != "SHA-256" || PasswordAlgorithm(9).String() != "0x0009" {
		t.Error("PasswordAlgorithm.String")
	}
}

func TestOpaqueString(t *testing.T) {
	for in, want := range map[string]string{
		"TheMatrIX": "TheMatrIX", "pass word": "pass word", matrixUser: matrixUser,
		"a\u00a0b":   "a b",       // non-ASCII space to U+0020
		"cafe\u0301": "caf\u00e9", // NFC
	} {
		if got, err := OpaqueString(in); err != nil || got != want {
			t.Errorf("OpaqueString(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "tab\there", "soft\u00adhyphen"} {
		if _, err := OpaqueString(bad); err == nil {
			t.Errorf("OpaqueString(%q) accepted", bad)
		}
	}
}

// sha256Req builds an Allocate with the given identity, algorithm
// attributes and integrity, decoded from its wire form.
type sha256Req struct {
	username string // USERNAME, unless userhash
	userhash bool   // send USERHASH of username instead
	realm    string
	alg      PasswordAlgorithm // 0: no PASSWORD-ALGORITHM(S)
	list     string            // PASSWORD-ALGORITHMS value; algorithmsSHA256First if empty and alg != 0
	key      []byte
	sha1     bool // add MESSAGE-INTEGRITY
	sha256   bool // add MESSAGE-INTEGRITY-SHA256
}

func (r sha256Req) build(t testing.TB, nonce string) *stun.Message {
	t.Helper()
	realm := r.realm
	if realm == "" {
		realm = testRealm
	}
	s := []stun.Setter{stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest)}
	if r.userhash {
		h := Userhash(r.username, realm)
		s = append(s, stun.RawAttribute{Type: stun.AttrUserhash, Value: h[:]})
	} else {
		s = append(s, stun.NewUsername(r.username))
	}
	s = append(s, stun.NewRealm(realm), stun.NewNonce(nonce))
	if r.alg != 0 {
		list := r.list
		if list == "" {
			list = algorithmsSHA256First
		}
		s = append(s, stun.RawAttribute{Type: stun.AttrPasswordAlgorithms, Value: []byte(list)},
			stun.RawAttribute{Type: stun.AttrPasswordAlgorithm, Value: []byte{0, byte(r.alg), 0, 0}})
	}
	if r.sha1 {
		s = append(s, stun.MessageIntegrity(r.key))
	}
	if r.sha256 {
		s = append(s, MessageIntegritySHA256(r.key))
	}
	return build(t, append(s, stun.Fingerprint)...)
}

func TestVerifySHA256(t *testing.T) {
	clk := &clock{t: t0}
	restUser, restPass := MintREST("s3cret", "carol", 3600e9, t0)
	aliceKey := LongTermKey("alice", testRealm, "alicepass")
	a := newAuth(t, Config{
		Users:   map[string]string{"alice": "alicepass"},
		Keys:    map[string][]byte{"bob": LongTermKey("bob", testRealm, "bobpass")},
		Secrets: []string{"s3cret"},
		Now:     clk.Now,
	})
	sha := func(u, p string) []byte { return Key(AlgorithmSHA256, u, testRealm, p) }
	md5 := func(u, p string) []byte { return Key(AlgorithmMD5, u, testRealm, p) }
	tests := []struct {
		name     string
		req      sha256Req
		wantErr  error
		wantUser string
		wantAlg  PasswordAlgorithm
		wantInt  Integrity
	}{
		{"SHA-256 key, MI-SHA256", sha256Req{username: "alice", alg: AlgorithmSHA256, key: sha("alice", "alicepass"), sha256: true},
			nil, "alice", AlgorithmSHA256, IntegritySHA256},
		{"SHA-256 key, both attributes", sha256Req{username: "alice", alg: AlgorithmSHA256, key: sha("alice", "alicepass"), sha1: true, sha256: true},
			nil, "alice", AlgorithmSHA256, IntegritySHA1 | IntegritySHA256},
		{"SHA-256 key, MI only: answered with MI-SHA256 too", sha256Req{username: "alice", alg: AlgorithmSHA256, key: sha("alice", "alicepass"), sha1: true},
			nil, "alice", AlgorithmSHA256, IntegritySHA1 | IntegritySHA256},
		{"SHA-256 wrong password", sha256Req{username: "alice", alg: AlgorithmSHA256, key: sha("alice", "wrong"), sha256: true},
			ErrBadIntegrity, "", 0, 0},
		{"SHA-256 algorithm with the MD5 key", sha256Req{username: "alice", alg: AlgorithmSHA256, key: md5("alice", "alicepass"), sha256: true},
			ErrBadIntegrity, "", 0, 0},
		{"MD5 algorithm, MI-SHA256", sha256Req{username: "alice", alg: AlgorithmMD5, key: md5("alice", "alicepass"), sha256: true},
			nil, "alice", AlgorithmMD5, IntegritySHA256},
		{"legacy MD5 with MI", sha256Req{username: "alice", key: aliceKey, sha1: true},
			nil, "alice", AlgorithmMD5, IntegritySHA1},
		{"legacy MD5 with MI-SHA256 only", sha256Req{username: "alice", key: aliceKey, sha256: true},
			nil, "alice", AlgorithmMD5, IntegritySHA256},
		{"USERHASH, SHA-256", sha256Req{username: "alice", userhash: true, alg: AlgorithmSHA256, key: sha("alice", "alicepass"), sha256: true},
			nil, "alice", AlgorithmSHA256, IntegritySHA256},
		{"USERHASH, legacy MD5", sha256Req{username: "alice", userhash: true, key: aliceKey, sha1: true},
			nil, "alice", AlgorithmMD5, IntegritySHA1},
		{"USERHASH of another realm", sha256Req{username: "alice", userhash: true, realm: "other.org", key: aliceKey, sha1: true},
			ErrUnknownUser, "", 0, 0},
		{"USERHASH of an unknown user", sha256Req{username: "mallory", userhash: true, key: aliceKey, sha1: true},
			ErrUnknownUser, "", 0, 0},
		{"stored MD5 key: MD5 with MI-SHA256", sha256Req{username: "bob", alg: AlgorithmMD5, list: algorithmsMD5First, key: md5("bob", "bobpass"), sha256: true},
			nil, "bob", AlgorithmMD5, IntegritySHA256},
		{"stored MD5 key: USERHASH", sha256Req{username: "bob", userhash: true, key: md5("bob", "bobpass"), sha1: true},
			nil, "bob", AlgorithmMD5, IntegritySHA1},
		{"stored MD5 key: no SHA-256", sha256Req{username: "bob", alg: AlgorithmSHA256, key: sha("bob", "bobpass"), sha256: true},
			ErrBadIntegrity, "", 0, 0},
		{"REST, SHA-256", sha256Req{username: restUser, alg: AlgorithmSHA256, key: sha(restUser, restPass), sha256: true},
			nil, "carol", AlgorithmSHA256, IntegritySHA256},
		{"REST, legacy MD5", sha256Req{username: restUser, key: md5(restUser, restPass), sha1: true},
			nil, "carol", AlgorithmMD5, IntegritySHA1},
		{"REST by USERHASH cannot be found", sha256Req{username: restUser, userhash: true, alg: AlgorithmSHA256, key: sha(restUser, restPass), sha256: true},
			ErrUnknownUser, "", 0, 0},
		{"unsupported PASSWORD-ALGORITHM", sha256Req{username: "alice", alg: 3, key: sha("alice", "alicepass"), sha256: true},
			ErrPasswordAlgorithm, "", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.req.build(t, "nonce")
			raw := append([]byte(nil), m.Raw...)
			id, err := a.Verify(m)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify: err = %v, want %v", err, tt.wantErr)
			}
			if !bytes.Equal(m.Raw, raw) {
				t.Fatal("Verify changed the message")
			}
			if err != nil {
				return
			}
			if id.User != tt.wantUser || id.Algorithm != tt.wantAlg || id.Integrity != tt.wantInt ||
				!bytes.Equal(id.Key, tt.req.key) {
				t.Fatalf("Verify = %+v, want user %q %v integrity %b key %x", id, tt.wantUser, tt.wantAlg, tt.wantInt, tt.req.key)
			}
		})
	}

	t.Run("truncated MESSAGE-INTEGRITY-SHA256", func(t *testing.T) {
		key := sha("alice", "alicepass")
		m := build(t, stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), stun.NewUsername("alice"),
			stun.NewRealm(testRealm), stun.RawAttribute{Type: stun.AttrPasswordAlgorithm, Value: []byte{0, 2, 0, 0}},
			truncatedSHA256{key: key, n: 16})
		if _, err := a.Verify(m); !errors.Is(err, ErrBadIntegrity) {
			t.Fatalf("Verify: err = %v", err)
		}
	})
}

// truncatedSHA256 adds a MESSAGE-INTEGRITY-SHA256 cut to n bytes (RFC 8489
// §14.6 allows that only where a STUN usage says so; TURN does not).
type truncatedSHA256 struct {
	key []byte
	n   int
}

func (s truncatedSHA256) AddTo(m *stun.Message) error {
	sum := integritySHA256(s.key, m.Raw, len(m.Raw)-stunHeaderSize+attrHeaderSize+s.n)
	m.Add(stun.AttrMessageIntegritySHA256, sum[:s.n])
	return nil
}

// TestVerifyOpaqueString checks that a static user whose name and
// password are not in OpaqueString form verifies both as configured (what
// browsers hash) and prepared (what an RFC 8489 client hashes).
func TestVerifyOpaqueString(t *testing.T) {
	const (
		nameNFD = "Jose\u0301"  // "José" decomposed
		nameNFC = "Jos\u00e9"   // OpaqueString(nameNFD)
		passRaw = "p\u00a0ss"   // a no-break space
		passPrp = "p ss"        // OpaqueString(passRaw)
		realm   = "example.org" // ASCII: its own OpaqueString
	)
	a := newAuth(t, Config{Realm: realm, Users: map[string]string{nameNFD: passRaw}})
	for _, c := range []struct {
		name     string
		req      sha256Req
		wantUser string
	}{
		{"raw, MD5", sha256Req{username: nameNFD, key: Key(AlgorithmMD5, nameNFD, realm, passRaw), sha1: true}, nameNFD},
		{"prepared, SHA-256", sha256Req{username: nameNFC, alg: AlgorithmSHA256, key: Key(AlgorithmSHA256, nameNFC, realm, passPrp), sha256: true}, nameNFD},
		{"prepared name, raw password, SHA-256", sha256Req{username: nameNFC, alg: AlgorithmSHA256, key: Key(AlgorithmSHA256, nameNFC, realm, passRaw), sha256: true}, nameNFD},
		{"prepared, USERHASH", sha256Req{username: nameNFC, userhash: true, alg: AlgorithmSHA256, key: Key(AlgorithmSHA256, nameNFC, realm, passPrp), sha256: true}, nameNFD},
		{"raw, USERHASH", sha256Req{username: nameNFD, userhash: true, key: Key(AlgorithmMD5, nameNFD, realm, passRaw), sha1: true}, nameNFD},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.req.realm = realm
			id, err := a.Verify(c.req.build(t, "nonce"))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if id.Username != c.wantUser || id.User != c.wantUser {
				t.Fatalf("Verify = %+v, want the configured name %q", id, c.wantUser)
			}
		})
	}
}

func TestNonceCookie(t *testing.T) {
	client := netip.MustParseAddr("192.0.2.1")
	for _, c := range []struct {
		name       string
		cfg        Config
		wantCookie string
		wantList   string
	}{
		{"static users only: username anonymity", Config{Users: map[string]string{"a": "b"}}, "obMatJos2wAAD", algorithmsSHA256First},
		{"REST secrets: no anonymity", Config{Users: map[string]string{"a": "b"}, Secrets: []string{"s"}}, "obMatJos2gAAB", algorithmsSHA256First},
		{"stored MD5 keys: MD5 first", Config{Keys: map[string][]byte{"a": make([]byte, KeySize)}}, "obMatJos2wAAD", algorithmsMD5First},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := newAuth(t, c.cfg)
			nonce := a.Nonce(client)
			if !strings.HasPrefix(nonce, c.wantCookie) || len(nonce) != NonceLen {
				t.Fatalf("nonce %q, want %d characters starting %q", nonce, NonceLen, c.wantCookie)
			}
			m := build(t, stun.TransactionID, stun.BindingRequest, a.PasswordAlgorithms())
			if got, _ := m.Get(stun.AttrPasswordAlgorithms); string(got) != c.wantList {
				t.Fatalf("PASSWORD-ALGORITHMS = %x, want %x", got, c.wantList)
			}
		})
	}
	// The feature bits decode to bit 0 (and bit 1) under both readings of
	// RFC 8489 §18.1 / Errata 6290.
	for cookie, want := range map[string]uint32{"gAAB": 0x800001, "wAAD": 0xC00003} {
		b, err := base64.StdEncoding.DecodeString(cookie)
		if err != nil || uint32(b[0])<<16|uint32(b[1])<<8|uint32(b[2]) != want {
			t.Errorf("cookie %q = %x, %v; want %06x", cookie, b, err, want)
		}
	}
}

func TestCheckPasswordAlgorithms(t *testing.T) {
	clk := &clock{t: t0}
	key := []byte("0123456789abcdef0123456789abcdef")
	a := newAuth(t, Config{Users: map[string]string{"alice": "pw"}, NonceKey: key, Now: clk.Now})
	client := netip.MustParseAddr("192.0.2.1")
	nonce := a.Nonce(client)
	withAttrs := func(attrs ...stun.Setter) *stun.Message {
		s := append([]stun.Setter{stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
			stun.NewUsername("alice"), stun.NewRealm(testRealm), stun.NewNonce(nonce)}, attrs...)
		return build(t, append(s, MessageIntegritySHA256(Key(AlgorithmSHA256, "alice", testRealm, "pw")))...)
	}
	list := func(v string) stun.Setter {
		return stun.RawAttribute{Type: stun.AttrPasswordAlgorithms, Value: []byte(v)}
	}
	alg := func(v ...byte) stun.Setter { return stun.RawAttribute{Type: stun.AttrPasswordAlgorithm, Value: v} }
	sha, md5 := alg(0, 2, 0, 0), alg(0, 1, 0, 0)
	tests := []struct {
		name string
		m    *stun.Message
		ok   bool
	}{
		{"neither: legacy MD5", withAttrs(), true},
		{"SHA-256 from the list", withAttrs(list(algorithmsSHA256First), sha), true},
		{"MD5 from the list", withAttrs(list(algorithmsSHA256First), md5), true},
		{"list stripped", withAttrs(sha), false},
		{"algorithm stripped", withAttrs(list(algorithmsSHA256First)), false},
		{"list reordered to MD5 first", withAttrs(list(algorithmsMD5First), md5), false},
		{"list cut to MD5", withAttrs(list("\x00\x01\x00\x00"), md5), false},
		{"list with an extra algorithm", withAttrs(list(algorithmsSHA256First+"\x00\x03\x00\x00"), sha), false},
		{"algorithm not in the list", withAttrs(list(algorithmsSHA256First), alg(0, 3, 0, 0)), false},
		{"algorithm with parameters", withAttrs(list(algorithmsSHA256First), alg(0, 2, 0, 4, 1, 2, 3, 4)), false},
		{"malformed algorithm", withAttrs(list(algorithmsSHA256First), alg(0, 2)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := a.CheckPasswordAlgorithms(tt.m, nonce, client)
			if tt.ok != (err == nil) || err != nil && !errors.Is(err, ErrPasswordAlgorithm) {
				t.Fatalf("CheckPasswordAlgorithms: err = %v, want ok %v", err, tt.ok)
			}
		})
	}

	stripped := withAttrs(sha)
	t.Run("nonce of another client: left to CheckNonce", func(t *testing.T) {
		if err := a.CheckPasswordAlgorithms(stripped, nonce, netip.MustParseAddr("192.0.2.2")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("forged nonce: left to CheckNonce", func(t *testing.T) {
		if err := a.CheckPasswordAlgorithms(stripped, "obMatJos2gAAB"+strings.Repeat("A", nonceBodyLen), client); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("expired nonce: still checked", func(t *testing.T) {
		clk.t = t0.Add(DefaultNonceLifetime + 10e9)
		defer func() { clk.t = t0 }()
		if err := a.CheckPasswordAlgorithms(stripped, nonce, client); !errors.Is(err, ErrPasswordAlgorithm) {
			t.Fatalf("err = %v", err)
		}
	})
	// A reload that adds stored MD5 keys changes the offer to MD5 first;
	// nonces handed out before keep the list they were sent with.
	reloaded := newAuth(t, Config{Keys: map[string][]byte{"bob": make([]byte, KeySize)}, NonceKey: key, Now: clk.Now})
	t.Run("after a reload: the nonce's list", func(t *testing.T) {
		if err := reloaded.CheckPasswordAlgorithms(withAttrs(list(algorithmsSHA256First), sha), nonce, client); err != nil {
			t.Fatalf("old nonce with its own list: %v", err)
		}
		if err := reloaded.CheckPasswordAlgorithms(withAttrs(list(algorithmsMD5First), md5), nonce, client); err == nil {
			t.Fatal("old nonce with the new server's list accepted")
		}
		fresh := reloaded.Nonce(client)
		if err := reloaded.CheckPasswordAlgorithms(withAttrs(list(algorithmsMD5First), md5), fresh, client); err != nil {
			t.Fatalf("new nonce with the new list: %v", err)
		}
	})
}

func TestIntegritySHA256AddTo(t *testing.T) {
	key := Key(AlgorithmSHA256, "u", "r", "p")
	m := build(t, stun.TransactionID, stun.BindingSuccess, stun.NewSoftware("x"),
		stun.MessageIntegrity(key), MessageIntegritySHA256(key), stun.Fingerprint)
	if err := MessageIntegritySHA256(key).Check(m); err != nil {
		t.Fatalf("after MESSAGE-INTEGRITY: %v", err)
	}
	if err := stun.MessageIntegrity(key).Check(m); err != nil {
		t.Fatalf("MESSAGE-INTEGRITY before it: %v", err)
	}
	if err := MessageIntegritySHA256([]byte("other")).Check(m); !errors.Is(err, ErrBadIntegrity) {
		t.Fatalf("other key: %v", err)
	}
	withFP := stun.MustBuild(stun.TransactionID, stun.BindingSuccess, stun.Fingerprint)
	if err := MessageIntegritySHA256(key).AddTo(withFP); !errors.Is(err, stun.ErrFingerprintBeforeIntegrity) {
		t.Fatalf("after FINGERPRINT: %v", err)
	}
	// Changing any byte before the attribute breaks it.
	for i := 0; i < len(m.Raw)-attrHeaderSize-integritySHA256Size-8; i++ {
		if i >= 2 && i < 4 {
			continue // the length, which Check recomputes
		}
		c := decode(t, m.Raw)
		c.Raw[i] ^= 0x01
		if MessageIntegritySHA256(key).Check(c) == nil {
			t.Fatalf("flipping byte %d went unnoticed", i)
		}
	}
}
