package main

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"reflect"
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
			if got := iceURLs(tt.eps); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("iceURLs:\n got %q\nwant %q", got, tt.want)
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
		p       hostPolicy
		bound   netip.Addr
		want    netip.Addr
		wantErr bool
	}{
		{"external wins", hostPolicy{external: a("203.0.113.1"), relay: a("192.0.2.5"), primary: primary}, a("127.0.0.1"), a("203.0.113.1"), false},
		{"then relay ip", hostPolicy{relay: a("192.0.2.5"), primary: primary}, a("127.0.0.1"), a("192.0.2.5"), false},
		{"then a specific listener", hostPolicy{primary: primary}, a("127.0.0.1"), a("127.0.0.1"), false},
		{"mapped listener unmapped", hostPolicy{primary: primary}, a("::ffff:127.0.0.1"), a("127.0.0.1"), false},
		{"unspecified v4 asks primary", hostPolicy{primary: primary}, a("0.0.0.0"), a("192.0.2.99"), false},
		{"unspecified v6 asks primary", hostPolicy{primary: primary}, a("::"), a("192.0.2.99"), false},
		{"primary fails", hostPolicy{primary: failing}, a("::"), netip.Addr{}, true},
		{"no primary", hostPolicy{}, a("0.0.0.0"), netip.Addr{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.p.host(tt.bound)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("host(%v) = %v, %v; want %v, error %v", tt.bound, got, err, tt.want, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "--external-ip") {
				t.Errorf("error %q does not point at --external-ip", err)
			}
		})
	}
}

func TestEndpoints(t *testing.T) {
	bound := []relay.BoundListener{
		{Kind: relay.UDP, Addr: &net.UDPAddr{IP: net.IPv6unspecified, Port: 3478}},
		{Kind: relay.TCPTLS, Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 443}},
	}
	p := hostPolicy{primary: func() (netip.Addr, error) { return netip.MustParseAddr("192.0.2.7"), nil }}
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

func TestNewICEServersJSON(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	urls := []string{"stun:192.0.2.1:3478", "turn:192.0.2.1:3478?transport=udp"}
	b, err := mintICEServers(urls, "s3cret", restCredentialUser, 24*time.Hour, now)
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
