package iceapi

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/relay"
)

func ep(kind relay.ListenerKind, addr string) endpoint {
	return endpoint{kind: kind, addr: netip.MustParseAddrPort(addr)}
}

func TestICEURLs(t *testing.T) {
	tests := []struct {
		name string
		eps  []endpoint
		want []string
	}{
		{
			name: "defaults, ordered UDP then TCP then TLS",
			eps: []endpoint{
				ep(relay.UDP, "198.51.100.1:3478"),
				ep(relay.TCP, "198.51.100.1:3478"),
				ep(relay.TLS, "198.51.100.1:5349"),
				ep(relay.UDP, "198.51.100.1:443"),
				ep(relay.TCPTLS, "198.51.100.1:443"),
			},
			want: []string{
				"stun:198.51.100.1:3478",
				"turn:198.51.100.1:3478?transport=udp",
				"stun:198.51.100.1:443",
				"turn:198.51.100.1:443?transport=udp",
				"turn:198.51.100.1:3478?transport=tcp",
				"turn:198.51.100.1:443?transport=tcp",
				"turns:198.51.100.1:5349?transport=tcp",
				"turns:198.51.100.1:443?transport=tcp",
			},
		},
		{
			name: "TLS listed first still comes last",
			eps:  []endpoint{ep(relay.TLS, "192.0.2.1:5349"), ep(relay.TCP, "192.0.2.1:3478"), ep(relay.UDP, "192.0.2.1:3478")},
			want: []string{
				"stun:192.0.2.1:3478",
				"turn:192.0.2.1:3478?transport=udp",
				"turn:192.0.2.1:3478?transport=tcp",
				"turns:192.0.2.1:5349?transport=tcp",
			},
		},
		{
			name: "IPv6 in brackets",
			eps:  []endpoint{ep(relay.UDP, "[2001:db8::1]:3478"), ep(relay.TCPTLS, "[2001:db8::1]:443")},
			want: []string{
				"stun:[2001:db8::1]:3478",
				"turn:[2001:db8::1]:3478?transport=udp",
				"turn:[2001:db8::1]:443?transport=tcp",
				"turns:[2001:db8::1]:443?transport=tcp",
			},
		},
		{
			name: "duplicates removed",
			eps:  []endpoint{ep(relay.UDP, "192.0.2.1:3478"), ep(relay.UDP, "192.0.2.1:3478"), ep(relay.TCP, "192.0.2.1:443"), ep(relay.TCPTLS, "192.0.2.1:443")},
			want: []string{
				"stun:192.0.2.1:3478",
				"turn:192.0.2.1:3478?transport=udp",
				"turn:192.0.2.1:443?transport=tcp",
				"turns:192.0.2.1:443?transport=tcp",
			},
		},
		{name: "none", eps: nil, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := urls(tt.eps); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("urls:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestHostPolicy(t *testing.T) {
	primary := func() (netip.Addr, error) { return netip.MustParseAddr("192.0.2.99"), nil }
	failing := func() (netip.Addr, error) { return netip.Addr{}, errors.New("no route") }
	a := netip.MustParseAddr
	tests := []struct {
		name    string
		p       HostPolicy
		bound   netip.Addr
		want    netip.Addr
		wantErr bool
	}{
		{"external wins", HostPolicy{External: a("203.0.113.1"), Relay: a("192.0.2.5"), Primary: primary}, a("127.0.0.1"), a("203.0.113.1"), false},
		{"then relay ip", HostPolicy{Relay: a("192.0.2.5"), Primary: primary}, a("127.0.0.1"), a("192.0.2.5"), false},
		{"then a specific listener", HostPolicy{Primary: primary}, a("127.0.0.1"), a("127.0.0.1"), false},
		{"mapped listener unmapped", HostPolicy{Primary: primary}, a("::ffff:127.0.0.1"), a("127.0.0.1"), false},
		{"unspecified v4 asks primary", HostPolicy{Primary: primary}, a("0.0.0.0"), a("192.0.2.99"), false},
		{"unspecified v6 asks primary", HostPolicy{Primary: primary}, a("::"), a("192.0.2.99"), false},
		{"primary fails", HostPolicy{Primary: failing}, a("::"), netip.Addr{}, true},
		{"no primary", HostPolicy{}, a("0.0.0.0"), netip.Addr{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.p.host(tt.bound)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("host(%v) = %v, %v; want %v, error %v", tt.bound, got, err, tt.want, tt.wantErr)
			}
			var noAddr *NoAddressError
			if err != nil && (!errors.As(err, &noAddr) || !strings.Contains(err.Error(), "listener on")) {
				t.Errorf("error %q is not a NoAddressError naming the listener", err)
			}
		})
	}
}

func TestEndpoints(t *testing.T) {
	bound := []relay.BoundListener{
		{Kind: relay.UDP, Addr: &net.UDPAddr{IP: net.IPv6unspecified, Port: 3478}},
		{Kind: relay.TCPTLS, Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 443}},
	}
	p := HostPolicy{Primary: func() (netip.Addr, error) { return netip.MustParseAddr("192.0.2.7"), nil }}
	got, err := endpoints(bound, p)
	if err != nil {
		t.Fatal(err)
	}
	want := []endpoint{ep(relay.UDP, "192.0.2.7:3478"), ep(relay.TCPTLS, "127.0.0.1:443")}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("endpoints = %v, want %v", got, want)
	}

	if _, err := endpoints([]relay.BoundListener{{Kind: relay.UDP}}, p); err == nil {
		t.Error("endpoints with a nil address succeeded")
	}
}

func TestRESTConfigurationJSON(t *testing.T) {
	const restCredentialUser = "postern"
	now := time.Unix(1_700_000_000, 0)
	list := []string{"stun:192.0.2.1:3478", "turn:192.0.2.1:3478?transport=udp"}
	b, err := json.Marshal(RESTConfiguration(list, "s3cret", restCredentialUser, 24*time.Hour, now))
	if err != nil {
		t.Fatal(err)
	}

	// The exact shape a WebRTC application expects.
	var doc map[string][]map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if len(doc) != 1 || len(doc["iceServers"]) != 1 {
		t.Fatalf("JSON %s: want {\"iceServers\":[one server]}", b)
	}
	server := doc["iceServers"][0]
	if len(server) != 3 {
		t.Errorf("server %v: want exactly urls, username, credential", server)
	}
	gotURLs, _ := json.Marshal(server["urls"])
	if string(gotURLs) != `["stun:192.0.2.1:3478","turn:192.0.2.1:3478?transport=udp"]` {
		t.Errorf("urls = %s", gotURLs)
	}

	// A TURN REST API credential (the coturn form): EXPIRY:USER and
	// base64(HMAC-SHA1(secret, username)), expiring 24 h from now.
	username, _ := server["username"].(string)
	credential, _ := server["credential"].(string)
	expiry, user, ok := strings.Cut(username, ":")
	if !ok || user != restCredentialUser {
		t.Fatalf("username %q: want EXPIRY:%s", username, restCredentialUser)
	}
	if exp, err := strconv.ParseInt(expiry, 10, 64); err != nil || exp != now.Add(24*time.Hour).Unix() {
		t.Errorf("expiry %q: want %d", expiry, now.Add(24*time.Hour).Unix())
	}
	mac := hmac.New(sha1.New, []byte("s3cret"))
	mac.Write([]byte(username))
	if want := base64.StdEncoding.EncodeToString(mac.Sum(nil)); credential != want {
		t.Errorf("credential = %q, want %q", credential, want)
	}
}

// TestICEServersIPv6: a listener on every address is also listed with the
// host's global IPv6 address (turn:[2001:db8::1]:3478?transport=udp), for
// clients on IPv6-only networks; not for a listener on one IPv4 address,
// not with a ULA or link-local address, and an IPv6 relay address wins
// over the primary one.
func TestICEServersIPv6(t *testing.T) {
	udpAll := relay.BoundListener{Kind: relay.UDP, Addr: &net.UDPAddr{IP: net.IPv6unspecified, Port: 3478}}
	tcp4 := relay.BoundListener{Kind: relay.TCP, Addr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 3478}}
	primary := func(s string) func() (netip.Addr, error) {
		return func() (netip.Addr, error) { return netip.MustParseAddr(s), nil }
	}
	for _, tc := range []struct {
		name   string
		policy HostPolicy
		want   []string
		absent []string
	}{
		{
			name:   "global primary IPv6",
			policy: HostPolicy{Primary: primary("192.0.2.1"), Primary6: primary("2001:db8::1")},
			want:   []string{"turn:192.0.2.1:3478?transport=udp", "turn:[2001:db8::1]:3478?transport=udp", "stun:[2001:db8::1]:3478", "turn:192.0.2.1:3478?transport=tcp"},
			absent: []string{"turn:[2001:db8::1]:3478?transport=tcp"},
		},
		{
			name:   "ULA is not listed",
			policy: HostPolicy{Primary: primary("192.0.2.1"), Primary6: primary("fd00::2")},
			absent: []string{"turn:[fd00::2]:3478?transport=udp"},
		},
		{
			name:   "IPv6 relay address",
			policy: HostPolicy{Relay: netip.MustParseAddr("192.0.2.9"), Relay6: netip.MustParseAddr("2001:db8::9"), Primary6: primary("2001:db8::1")},
			want:   []string{"turn:192.0.2.9:3478?transport=udp", "turn:[2001:db8::9]:3478?transport=udp"},
			absent: []string{"turn:[2001:db8::1]:3478?transport=udp"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eps, err := endpoints([]relay.BoundListener{udpAll, tcp4}, tc.policy)
			if err != nil {
				t.Fatal(err)
			}
			list := urls(eps)
			for _, u := range tc.want {
				if !slices.Contains(list, u) {
					t.Errorf("%q missing from %q", u, list)
				}
			}
			for _, u := range tc.absent {
				if slices.Contains(list, u) {
					t.Errorf("%q listed in %q", u, list)
				}
			}
		})
	}
	// From the configuration (postern ice-servers): a listener written
	// without a host is on every address of both families.
	eps, err := specEndpoints([]relay.ListenSpec{{Kind: relay.UDP, Addr: ":3478"}, {Kind: relay.UDP, Addr: "0.0.0.0:3479"}}, "",
		HostPolicy{Primary: primary("192.0.2.1"), Primary6: primary("2001:db8::1")})
	if err != nil {
		t.Fatal(err)
	}
	list := urls(eps)
	if !slices.Contains(list, "turn:[2001:db8::1]:3478?transport=udp") || slices.Contains(list, "turn:[2001:db8::1]:3479?transport=udp") {
		t.Errorf("from specs: %q, want the IPv6 URL for :3478 only", list)
	}
}
