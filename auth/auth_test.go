package auth

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

const testRealm = "example.org"

// t0 is the fixed "now" of the tests.
var t0 = time.Unix(1_750_000_000, 0)

// clock is a controllable time source for Config.Now.
type clock struct{ t time.Time }

func (c *clock) Now() time.Time { return c.t }

// request builds an Allocate request the way a client does, signed with the
// long-term credentials (user, realm, pass), and returns it decoded from its
// wire form, as the server would see it.
func request(t testing.TB, user, realm, pass string) *stun.Message {
	t.Helper()
	setters := []stun.Setter{
		stun.TransactionID,
		stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		stun.NewUsername(user),
		stun.NewRealm(realm),
		stun.NewNonce("nonce"),
		stun.NewLongTermIntegrity(user, realm, pass),
		stun.Fingerprint,
	}
	return build(t, setters...)
}

func build(t testing.TB, setters ...stun.Setter) *stun.Message {
	t.Helper()
	m, err := stun.Build(setters...)
	if err != nil {
		t.Fatalf("stun.Build: %v", err)
	}
	got := &stun.Message{Raw: append([]byte(nil), m.Raw...)}
	if err := got.Decode(); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return got
}

func newAuth(t testing.TB, cfg Config) *Authenticator {
	t.Helper()
	if cfg.Realm == "" {
		cfg.Realm = testRealm
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return a
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"empty realm", Config{}, "empty realm"},
		{"long realm", Config{Realm: strings.Repeat("r", 128)}, "at most 127"},
		{"bad utf8 realm", Config{Realm: "\xff"}, "UTF-8"},
		{"empty secret", Config{Realm: testRealm, Secrets: []string{"a", ""}}, "secret #2 is empty"},
		{"short key", Config{Realm: testRealm, Keys: map[string][]byte{"bob": make([]byte, 15)}}, `"bob" is 15 bytes`},
		{"long key", Config{Realm: testRealm, Keys: map[string][]byte{"bob": make([]byte, 20)}}, "want 16"},
		{"empty user", Config{Realm: testRealm, Users: map[string]string{"": "pw"}}, "empty name"},
		{"empty key user", Config{Realm: testRealm, Keys: map[string][]byte{"": make([]byte, 16)}}, "empty user"},
		{"empty password", Config{Realm: testRealm, Users: map[string]string{"al": ""}}, "empty password"},
		{"short nonce key", Config{Realm: testRealm, NonceKey: []byte("short")}, "at least 16"},
		{"negative lifetime", Config{Realm: testRealm, NonceLifetime: -time.Second}, "at least 1s"},
		{"tiny lifetime", Config{Realm: testRealm, NonceLifetime: time.Millisecond}, "at least 1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestRealm(t *testing.T) {
	if got := newAuth(t, Config{Realm: "turn.example"}).Realm(); got != "turn.example" {
		t.Fatalf("Realm() = %q", got)
	}
}

func TestLongTermKey(t *testing.T) {
	for _, c := range []struct{ user, realm, pass string }{
		{"alice", "example.org", "secret"},
		{"", "", ""},
		{"a:b", "r:s", "p:q"},
		{"\u30DE\u30C8\u30EA\u30C3\u30AF\u30B9", "example.org", "TheMatrIX"},
	} {
		got := LongTermKey(c.user, c.realm, c.pass)
		if want := turn.GenerateAuthKey(c.user, c.realm, c.pass); !bytes.Equal(got, want) {
			t.Errorf("LongTermKey(%q,%q,%q) = %x, pion GenerateAuthKey %x", c.user, c.realm, c.pass, got, want)
		}
		if want := stun.NewLongTermIntegrity(c.user, c.realm, c.pass); !bytes.Equal(got, want) {
			t.Errorf("LongTermKey(%q,%q,%q) = %x, pion NewLongTermIntegrity %x", c.user, c.realm, c.pass, got, want)
		}
	}
}

// TestVerifyRFC5769 checks the long-term credential sample request of
// RFC 5769 §2.4 (USERNAME "マトリックス", password "TheMatrIX" after
// SASLprep, realm "example.org"), both with the password and the key.
func TestVerifyRFC5769(t *testing.T) {
	raw := []byte("\x00\x01\x00\x60" +
		"\x21\x12\xa4\x42" +
		"\x78\xad\x34\x33\xc6\xad\x72\xc0\x29\xda\x41\x2e" +
		"\x00\x06\x00\x12" +
		"\xe3\x83\x9e\xe3\x83\x88\xe3\x83\xaa\xe3\x83\x83" +
		"\xe3\x82\xaf\xe3\x82\xb9\x00\x00" +
		"\x00\x15\x00\x1c" +
		"\x66\x2f\x2f\x34\x39\x39\x6b\x39\x35\x34\x64\x36" +
		"\x4f\x4c\x33\x34\x6f\x4c\x39\x46\x53\x54\x76\x79" +
		"\x36\x34\x73\x41" +
		"\x00\x14\x00\x0b" +
		"\x65\x78\x61\x6d\x70\x6c\x65\x2e\x6f\x72\x67\x00" +
		"\x00\x08\x00\x14" +
		"\xf6\x70\x24\x65\x6d\xd6\x4a\x3e\x02\xb8\xe0\x71" +
		"\x2e\x85\xc9\xa2\x8c\xa8\x96\x66")
	const user = "\u30DE\u30C8\u30EA\u30C3\u30AF\u30B9"
	key := LongTermKey(user, "example.org", "TheMatrIX")
	for name, cfg := range map[string]Config{
		"password": {Realm: "example.org", Users: map[string]string{user: "TheMatrIX"}},
		"key":      {Realm: "example.org", Keys: map[string][]byte{user: key}},
	} {
		t.Run(name, func(t *testing.T) {
			m := &stun.Message{Raw: append([]byte(nil), raw...)}
			if err := m.Decode(); err != nil {
				t.Fatal(err)
			}
			id, err := newAuth(t, cfg).Verify(m)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if id.Username != user || id.User != user || !bytes.Equal(id.Key, key) {
				t.Fatalf("Verify = %+v", id)
			}
			if !bytes.Equal(m.Raw, raw) {
				t.Fatal("Verify changed the message bytes")
			}
		})
	}
}

func TestVerifyStatic(t *testing.T) {
	bobKey := LongTermKey("bob", testRealm, "bobpass")
	a := newAuth(t, Config{
		Users: map[string]string{"alice": "alicepass", "both": "viapassword"},
		Keys:  map[string][]byte{"bob": bobKey, "both": LongTermKey("both", testRealm, "viakey")},
	})
	tests := []struct {
		name, user, realm, pass string
		wantErr                 error
	}{
		{"password user", "alice", testRealm, "alicepass", nil},
		{"wrong password", "alice", testRealm, "alicepasS", ErrBadIntegrity},
		{"key-hash user", "bob", testRealm, "bobpass", nil},
		{"key-hash wrong password", "bob", testRealm, "alicepass", ErrBadIntegrity},
		{"both: password", "both", testRealm, "viapassword", nil},
		{"both: key", "both", testRealm, "viakey", nil},
		{"both: neither", "both", testRealm, "other", ErrBadIntegrity},
		{"unknown user", "mallory", testRealm, "alicepass", ErrUnknownUser},
		{"user names are case sensitive", "Alice", testRealm, "alicepass", ErrUnknownUser},
		{"other realm", "alice", "other.org", "alicepass", ErrBadIntegrity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := a.Verify(request(t, tt.user, tt.realm, tt.pass))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify: err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tt.user) {
					t.Errorf("error %q does not name the user", err)
				}
				if strings.Contains(err.Error(), tt.pass) {
					t.Errorf("error %q reveals the password", err)
				}
				return
			}
			want := LongTermKey(tt.user, testRealm, tt.pass)
			if id.Username != tt.user || id.User != tt.user || !bytes.Equal(id.Key, want) {
				t.Fatalf("Verify = %+v, want user %q key %x", id, tt.user, want)
			}
		})
	}

	t.Run("returned key is a copy", func(t *testing.T) {
		id, err := a.Verify(request(t, "bob", testRealm, "bobpass"))
		if err != nil {
			t.Fatal(err)
		}
		id.Key[0] ^= 0xff
		if _, err := a.Verify(request(t, "bob", testRealm, "bobpass")); err != nil {
			t.Fatalf("after changing the returned key: %v", err)
		}
	})

	t.Run("config is copied", func(t *testing.T) {
		users := map[string]string{"carol": "c1"}
		key := LongTermKey("dave", testRealm, "d1")
		keys := map[string][]byte{"dave": key}
		b := newAuth(t, Config{Users: users, Keys: keys})
		users["carol"] = "changed"
		key[0] ^= 0xff
		if _, err := b.Verify(request(t, "carol", testRealm, "c1")); err != nil {
			t.Errorf("carol: %v", err)
		}
		if _, err := b.Verify(request(t, "dave", testRealm, "d1")); err != nil {
			t.Errorf("dave: %v", err)
		}
	})
}

func TestVerifyMalformed(t *testing.T) {
	a := newAuth(t, Config{Users: map[string]string{"alice": "pw"}, Secrets: []string{"s"}})
	typ := stun.NewType(stun.MethodAllocate, stun.ClassRequest)
	tests := []struct {
		name    string
		m       *stun.Message
		wantErr error
	}{
		{"no USERNAME", build(t, stun.TransactionID, typ, stun.NewRealm(testRealm),
			stun.NewShortTermIntegrity("pw")), ErrNoUsername},
		{"empty USERNAME", build(t, stun.TransactionID, typ, stun.NewUsername(""), stun.NewRealm(testRealm),
			stun.NewLongTermIntegrity("", testRealm, "pw")), ErrNoUsername},
		{"oversized USERNAME", build(t, stun.TransactionID, typ,
			stun.RawAttribute{Type: stun.AttrUsername, Value: bytes.Repeat([]byte("u"), 600)},
			stun.NewLongTermIntegrity(strings.Repeat("u", 600), testRealm, "pw")), ErrNoUsername},
		{"no MESSAGE-INTEGRITY", build(t, stun.TransactionID, typ, stun.NewUsername("alice"),
			stun.NewRealm(testRealm)), ErrBadIntegrity},
		{"short-term integrity", build(t, stun.TransactionID, typ, stun.NewUsername("alice"),
			stun.NewRealm(testRealm), stun.NewShortTermIntegrity("pw")), ErrBadIntegrity},
		{"no REALM still checks the key", build(t, stun.TransactionID, typ, stun.NewUsername("alice"),
			stun.NewLongTermIntegrity("alice", testRealm, "pw")), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := a.Verify(tt.m); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify: err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestVerifyREST(t *testing.T) {
	clk := &clock{t: t0}
	// The first secret mints; the second is the one being rotated out.
	a := newAuth(t, Config{Secrets: []string{"new-secret", "old-secret"}, Now: clk.Now,
		Users: map[string]string{"4000000000:eve": "static"}})

	mint := func(secret, user string, ttl time.Duration) (string, string) {
		return MintREST(secret, user, ttl, t0)
	}
	type tc struct {
		name     string
		user     string // USERNAME
		pass     string
		wantUser string
		wantErr  error
	}
	var tests []tc
	u, p := mint("new-secret", "alice", time.Hour)
	tests = append(tests, tc{"first secret", u, p, "alice", nil})
	u, p = mint("old-secret", "alice", time.Hour)
	tests = append(tests, tc{"second (rotated) secret", u, p, "alice", nil})
	u, p = mint("removed-secret", "alice", time.Hour)
	tests = append(tests, tc{"removed secret", u, p, "", ErrBadIntegrity})
	u, p = mint("new-secret", "alice", -time.Second)
	tests = append(tests, tc{"expired a second ago", u, p, "", ErrExpired})
	u, p = mint("new-secret", "alice", 0)
	tests = append(tests, tc{"expires this second", u, p, "alice", nil})
	u, p = mint("new-secret", "", time.Hour)
	tests = append(tests, tc{"EXPIRY alone", u, p, u, nil})
	u, p = mint("new-secret", "room:42:bob", time.Hour)
	tests = append(tests, tc{"USER with colons", u, p, "room:42:bob", nil})
	u = "alice:" + u[:strings.IndexByte(u, ':')]
	tests = append(tests, tc{"USER:EXPIRY (coturn)", u, restPassword([]byte("old-secret"), u), "alice", nil})
	tests = append(tests, tc{"not a REST username", "alice", restPassword([]byte("new-secret"), "alice"), "", ErrUnknownUser})
	tests = append(tests, tc{"static user wins", "4000000000:eve", "static", "4000000000:eve", nil})
	tests = append(tests, tc{"static user is not REST", "4000000000:eve",
		restPassword([]byte("new-secret"), "4000000000:eve"), "", ErrBadIntegrity})

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := a.Verify(request(t, tt.user, testRealm, tt.pass))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify(%q): err = %v, want %v", tt.user, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if id.Username != tt.user || id.User != tt.wantUser {
				t.Fatalf("Verify(%q) = {Username %q, User %q}, want User %q", tt.user, id.Username, id.User, tt.wantUser)
			}
			if want := LongTermKey(tt.user, testRealm, tt.pass); !bytes.Equal(id.Key, want) {
				t.Fatalf("Key = %x, want %x", id.Key, want)
			}
		})
	}

	t.Run("expires with the clock", func(t *testing.T) {
		u, p := mint("new-secret", "alice", time.Minute)
		m := request(t, u, testRealm, p)
		clk.t = t0.Add(time.Minute)
		if _, err := a.Verify(m); err != nil {
			t.Fatalf("at expiry: %v", err)
		}
		clk.t = t0.Add(time.Minute + time.Second)
		defer func() { clk.t = t0 }()
		if _, err := a.Verify(m); !errors.Is(err, ErrExpired) {
			t.Fatalf("after expiry: err = %v, want ErrExpired", err)
		}
	})

	t.Run("no secrets configured", func(t *testing.T) {
		b := newAuth(t, Config{Now: clk.Now})
		u, p := mint("new-secret", "alice", time.Hour)
		if _, err := b.Verify(request(t, u, testRealm, p)); !errors.Is(err, ErrUnknownUser) {
			t.Fatalf("err = %v, want ErrUnknownUser", err)
		}
	})
}

// TestMintRESTMatchesPion asserts that MintREST produces exactly pion/turn's
// credentials for the same secret, user and expiry.
func TestMintRESTMatchesPion(t *testing.T) {
	for _, c := range []struct {
		secret, user string
		ttl          time.Duration
	}{
		{"s3cr3t", "alice", 24 * time.Hour},
		{"another secret with spaces", "user@example.com", time.Minute},
		{"s", "room:7", time.Hour},
		{"only-expiry", "", time.Hour},
	} {
		var pu, pp string
		var err error
		if c.user == "" {
			pu, pp, err = turn.GenerateLongTermCredentials(c.secret, c.ttl)
		} else {
			pu, pp, err = turn.GenerateLongTermTURNRESTCredentials(c.secret, c.user, c.ttl)
		}
		if err != nil {
			t.Fatal(err)
		}
		cred, ok := parseREST(pu)
		if !ok {
			t.Fatalf("parseREST(%q) failed on pion's username", pu)
		}
		// pion reads the clock itself; mint at the instant it used.
		u, p := MintREST(c.secret, c.user, c.ttl, time.Unix(cred.expiry, 0).Add(-c.ttl))
		if u != pu || p != pp {
			t.Errorf("MintREST(%q, %q) = (%q, %q), pion = (%q, %q)", c.secret, c.user, u, p, pu, pp)
		}
	}
}

func TestMintRESTKnownAnswer(t *testing.T) {
	u, p := MintREST("secret", "alice", time.Hour, t0)
	if u != "1750003600:alice" {
		t.Fatalf("username = %q", u)
	}
	// printf %s 1750003600:alice | openssl dgst -sha1 -hmac secret -binary | base64
	if want := "6j2fSm4PYePUkJjtb0IcBolISAY="; p != want {
		t.Fatalf("password = %q, want %q", p, want)
	}
}

func BenchmarkVerifyStatic(b *testing.B) {
	a := newAuth(b, Config{Users: map[string]string{"alice": "alicepass"}})
	m := request(b, "alice", testRealm, "alicepass")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Verify(m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyREST measures the worst accepted case: the second secret.
func BenchmarkVerifyREST(b *testing.B) {
	a := newAuth(b, Config{Secrets: []string{"new-secret", "old-secret"}, Now: (&clock{t: t0}).Now})
	u, p := MintREST("old-secret", "alice", time.Hour, t0)
	m := request(b, u, testRealm, p)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Verify(m); err != nil {
			b.Fatal(err)
		}
	}
}
