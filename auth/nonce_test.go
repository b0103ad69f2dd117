package auth

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestNonce(t *testing.T) {
	clk := &clock{t: t0}
	key := []byte("0123456789abcdef0123456789abcdef")
	a := newAuth(t, Config{NonceKey: key, NonceLifetime: 10 * time.Minute, Now: clk.Now})
	client := netip.MustParseAddr("198.51.100.7")
	nonce := a.Nonce(client)

	if len(nonce) != NonceLen || len(nonce) >= 128 {
		t.Fatalf("len(nonce) = %d, want %d (< 128)", len(nonce), NonceLen)
	}
	for _, c := range []byte(nonce) {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			t.Fatalf("nonce %q has character %q outside [A-Za-z0-9_-]", nonce, c)
		}
	}
	// testRealm's Authenticator has no static users: no username anonymity.
	if !strings.HasPrefix(nonce, "obMatJos2gAAB") {
		t.Fatalf("nonce %q does not start with the nonce cookie announcing password algorithms", nonce)
	}

	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	other := newAuth(t, Config{NonceKey: []byte("another key, 16+ bytes long"), Now: clk.Now})
	sameKey := newAuth(t, Config{NonceKey: key, Now: clk.Now})

	tests := []struct {
		name    string
		nonce   string
		client  netip.Addr
		at      time.Duration // clock offset from t0 when checking
		a       *Authenticator
		wantErr error
	}{
		{"fresh", nonce, client, 0, a, nil},
		{"just before lifetime", nonce, client, 10 * time.Minute, a, nil},
		{"stale after lifetime", nonce, client, 10*time.Minute + time.Second, a, ErrStaleNonce},
		{"clock stepped back a little", nonce, client, -5 * time.Second, a, nil},
		{"from the future", nonce, client, -6 * time.Second, a, ErrStaleNonce},
		{"IPv4-mapped form of the same client", nonce, netip.MustParseAddr("::ffff:198.51.100.7"), 0, a, nil},
		{"wrong IP", nonce, netip.MustParseAddr("198.51.100.8"), 0, a, ErrStaleNonce},
		{"wrong IP family", nonce, netip.MustParseAddr("2001:db8::7"), 0, a, ErrStaleNonce},
		{"tampered cookie prefix", flip(nonce, 0), client, 0, a, ErrStaleNonce},
		{"feature bits cleared", "obMatJos2AAAA" + nonce[nonceCookieLen:], client, 0, a, ErrStaleNonce},
		{"other cookie of ours (bits added)", cookieAnonymity + nonce[nonceCookieLen:], client, 0, a, ErrStaleNonce},
		{"tampered params", flip(nonce, nonceCookieLen), client, 0, a, ErrStaleNonce},
		{"tampered time", flip(nonce, nonceCookieLen+5), client, 0, a, ErrStaleNonce},
		{"tampered last char (MAC)", flip(nonce, NonceLen-1), client, 0, a, ErrStaleNonce},
		{"malformed: empty", "", client, 0, a, ErrStaleNonce},
		{"malformed: short", nonce[:NonceLen-1], client, 0, a, ErrStaleNonce},
		{"malformed: long", nonce + "A", client, 0, a, ErrStaleNonce},
		{"malformed: bad alphabet", nonce[:nonceCookieLen] + "+" + nonce[nonceCookieLen+1:], client, 0, a, ErrStaleNonce},
		{"malformed: newline", nonce[:20] + "\n" + nonce[21:], client, 0, a, ErrStaleNonce},
		{"malformed: old format", nonce[nonceCookieLen:], client, 0, a, ErrStaleNonce},
		{"malformed: RFC 5769 nonce", "f//499k954d6OL34oL9FSTvy64sA", client, 0, a, ErrStaleNonce},
		{"from another key", nonce, client, 0, other, ErrStaleNonce},
		{"another server with the same key", nonce, client, 0, sameKey, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk.t = t0.Add(tt.at)
			defer func() { clk.t = t0 }()
			if err := tt.a.CheckNonce(tt.nonce, tt.client); !errors.Is(err, tt.wantErr) {
				t.Fatalf("CheckNonce: err = %v, want %v", err, tt.wantErr)
			}
		})
	}

	t.Run("IPv6 client with zone", func(t *testing.T) {
		ip := netip.MustParseAddr("fe80::1%eth0")
		n := a.Nonce(ip)
		if err := a.CheckNonce(n, netip.MustParseAddr("fe80::1")); err != nil {
			t.Fatalf("zone should not matter: %v", err)
		}
		if err := a.CheckNonce(n, netip.MustParseAddr("fe80::2")); !errors.Is(err, ErrStaleNonce) {
			t.Fatalf("other IPv6 client: err = %v", err)
		}
	})

	t.Run("changes with time", func(t *testing.T) {
		clk.t = t0.Add(time.Second)
		defer func() { clk.t = t0 }()
		if a.Nonce(client) == nonce {
			t.Fatal("nonce did not change after a second")
		}
	})

	t.Run("random key by default", func(t *testing.T) {
		b := newAuth(t, Config{Now: clk.Now})
		c := newAuth(t, Config{Now: clk.Now})
		n := b.Nonce(client)
		if err := b.CheckNonce(n, client); err != nil {
			t.Fatal(err)
		}
		if err := c.CheckNonce(n, client); !errors.Is(err, ErrStaleNonce) {
			t.Fatalf("two random keys agree: err = %v", err)
		}
	})

	t.Run("default lifetime", func(t *testing.T) {
		b := newAuth(t, Config{Now: clk.Now})
		n := b.Nonce(client)
		clk.t = t0.Add(DefaultNonceLifetime)
		defer func() { clk.t = t0 }()
		if err := b.CheckNonce(n, client); err != nil {
			t.Fatalf("at DefaultNonceLifetime: %v", err)
		}
		clk.t = t0.Add(DefaultNonceLifetime + time.Second)
		if err := b.CheckNonce(n, client); !errors.Is(err, ErrStaleNonce) {
			t.Fatalf("after DefaultNonceLifetime: err = %v", err)
		}
	})
}

func TestNonceAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	a := newAuth(t, Config{})
	client := netip.MustParseAddr("2001:db8::1")
	nonce := a.Nonce(client)
	bad := "A" + nonce[1:]
	if nonce[0] == 'A' {
		bad = "B" + nonce[1:]
	}
	if n := testing.AllocsPerRun(100, func() {
		if err := a.CheckNonce(nonce, client); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("CheckNonce (valid) allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		if a.CheckNonce(bad, client) == nil {
			t.Fatal("tampered nonce accepted")
		}
		if a.CheckNonce("garbage", client) == nil {
			t.Fatal("garbage accepted")
		}
	}); n != 0 {
		t.Errorf("CheckNonce (invalid) allocates %v times", n)
	}
	// Nonce allocates only the returned string.
	if n := testing.AllocsPerRun(100, func() { _ = a.Nonce(client) }); n > 1 {
		t.Errorf("Nonce allocates %v times, want at most 1", n)
	}
}

func BenchmarkNonce(b *testing.B) {
	a := newAuth(b, Config{})
	client := netip.MustParseAddr("203.0.113.9")
	b.ReportAllocs()
	for b.Loop() {
		_ = a.Nonce(client)
	}
}

func BenchmarkCheckNonce(b *testing.B) {
	a := newAuth(b, Config{})
	client := netip.MustParseAddr("203.0.113.9")
	nonce := a.Nonce(client)
	b.ReportAllocs()
	for b.Loop() {
		if err := a.CheckNonce(nonce, client); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckNonceParallel(b *testing.B) {
	a := newAuth(b, Config{})
	client := netip.MustParseAddr("203.0.113.9")
	nonce := a.Nonce(client)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := a.CheckNonce(nonce, client); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
