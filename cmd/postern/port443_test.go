package main

import (
	"bufio"
	"github.com/postern/postern/node"
	"io"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/postern/postern/config"
	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/relay"
)

// webOf is the relay's [web] configuration of s.
func webOf(s config.Values) relay.WebConfig { return relayOf(s).Web }

func TestPort443Settings(t *testing.T) {
	t.Run("flags", func(t *testing.T) {
		s, err := settingsFor(t, "--web-backend", "127.0.0.1:8443", "--web-backend-proxy-protocol",
			"--turn-host", "TURN.example.org.", "--turn-host", "turn2.example.org",
			"--proxy-protocol-from", "10.0.0.0/8", "--proxy-protocol-from", "2001:db8::1",
			"--acme", "--acme-domain", "turn.example.org", "--acme-email", "ops@example.org",
			"--acme-storage", "/var/lib/postern/acme", "--acme-ca", "https://ca.test/dir", "--acme-ca-root", "/etc/ca.pem")
		if err != nil {
			t.Fatal(err)
		}
		wantWeb := relay.WebConfig{Backend: "127.0.0.1:8443", BackendProxyProtocol: true,
			TURNHosts:   []string{"turn.example.org", "turn2.example.org"},
			IdleTimeout: relay.DefaultWebIdleTimeout, MaxConns: relay.DefaultWebMaxConns}
		if got := webOf(s); !reflect.DeepEqual(got, wantWeb) {
			t.Errorf("web %+v\nwant %+v", got, wantWeb)
		}
		if got, want := relayOf(s).ProxyProtocolFrom, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::1/128")}; !reflect.DeepEqual(got, want) {
			t.Errorf("proxy_protocol_from %v, want %v", got, want)
		}
		wantACME := config.ACME{Domains: []string{"turn.example.org"}, CA: "https://ca.test/dir", Email: "ops@example.org",
			Storage: "/var/lib/postern/acme", CARoot: "/etc/ca.pem"}
		if got := config.ACMEOf(s); !reflect.DeepEqual(got, wantACME) {
			t.Errorf("ACME %+v\nwant %+v", got, wantACME)
		}
	})
	t.Run("file, and a flag over it", func(t *testing.T) {
		path := writeFile(t, "c.toml", `
proxy_protocol_from = ["192.0.2.0/24"]
[tls]
acme = true
domains = ["a.example.org", "b.example.org"]
[web]
backend = "[::1]:8443"
turn_hosts = ["a.example.org"]
`)
		s, err := settingsFor(t, "--config", path, "--web-backend", "127.0.0.1:9443")
		if err != nil {
			t.Fatal(err)
		}
		web, acme := webOf(s), config.ACMEOf(s)
		if web.Backend != "127.0.0.1:9443" || !reflect.DeepEqual(web.TURNHosts, []string{"a.example.org"}) ||
			len(relayOf(s).ProxyProtocolFrom) != 1 || len(acme.Domains) != 2 || acme.CA != relay.DefaultACMECA {
			t.Errorf("settings %+v %+v", web, acme)
		}
	})
	t.Run("defaults", func(t *testing.T) {
		s, err := settingsFor(t)
		if err != nil {
			t.Fatal(err)
		}
		want := relay.WebConfig{IdleTimeout: relay.DefaultWebIdleTimeout, MaxConns: relay.DefaultWebMaxConns}
		if got := webOf(s); !reflect.DeepEqual(got, want) || relayOf(s).ProxyProtocolFrom != nil || config.ACMEOf(s).Domains != nil {
			t.Errorf("defaults %+v, want nothing shared, no PROXY protocol, no ACME", got)
		}
	})
}

// TestWebPassthroughSettings: [web] idle_timeout and max_conns, by file
// and flag; 0 connections means no cap (negative for the relay).
func TestWebPassthroughSettings(t *testing.T) {
	path := writeFile(t, "c.toml", "[web]\nidle_timeout = \"45s\"\nmax_conns = 0\n")
	s, err := settingsFor(t, "--config", path)
	if err != nil {
		t.Fatal(err)
	}
	if w := webOf(s); w.IdleTimeout != 45*time.Second || w.MaxConns != -1 {
		t.Errorf("file: idle %v, max conns %d; want 45s, -1 (no cap)", w.IdleTimeout, w.MaxConns)
	}
	s, err = settingsFor(t, "--config", path, "--web-idle-timeout", "3m", "--web-max-conns", "50")
	if err != nil {
		t.Fatal(err)
	}
	if w := webOf(s); w.IdleTimeout != 3*time.Minute || w.MaxConns != 50 {
		t.Errorf("flags: idle %v, max conns %d; want 3m, 50", w.IdleTimeout, w.MaxConns)
	}
	for _, args := range [][]string{{"--web-max-conns", "-1"}, {"--web-idle-timeout", "-1s"}} {
		if _, err := settingsFor(t, args...); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

func TestPort443BadValues(t *testing.T) {
	cert, key := writeFile(t, "c.pem", ""), writeFile(t, "k.pem", "")
	for _, tt := range []struct {
		name string
		args []string
		want []string
	}{
		{"backend without port", []string{"--web-backend", "127.0.0.1"}, []string{"web.backend (--web-backend)", "HOST:PORT"}},
		{"backend port 0", []string{"--web-backend", "127.0.0.1:0"}, []string{"web.backend", "1 to 65535"}},
		{"proxy header without backend", []string{"--web-backend-proxy-protocol"}, []string{"web.backend_proxy_protocol", "web.backend (--web-backend)"}},
		{"turn host with port", []string{"--turn-host", "turn.example.org:443"}, []string{"web.turn_hosts (--turn-host)", "bare DNS name"}},
		{"turn host an address", []string{"--turn-host", "192.0.2.1"}, []string{"web.turn_hosts", "IP address"}},
		{"proxy from everywhere", []string{"--proxy-protocol-from", "0.0.0.0/0"}, []string{"proxy_protocol_from (--proxy-protocol-from)", "every address"}},
		{"proxy from garbage", []string{"--proxy-protocol-from", "lb.example"}, []string{"proxy_protocol_from (--proxy-protocol-from)"}},
		{"domains without acme", []string{"--acme-domain", "a.example.org"}, []string{"tls.domains (--acme-domain)", "acme = true"}},
		{"acme without domains", []string{"--acme"}, []string{"tls.domains (--acme-domain) is empty"}},
		{"acme and a certificate", []string{"--acme", "--acme-domain", "a.example.org", "--tls-cert", cert, "--tls-key", key},
			[]string{"tls.acme (--acme) and tls.cert (--tls-cert)", "choose one"}},
		{"acme for an address", []string{"--acme", "--acme-domain", "192.0.2.1"}, []string{"tls.domains (--acme-domain)", "IP address"}},
		{"acme ca over http", []string{"--acme", "--acme-domain", "a.example.org", "--acme-ca", "http://ca.test/dir"}, []string{"tls.acme_ca (--acme-ca)", "https://"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := settingsFor(t, tt.args...)
			if err == nil {
				t.Fatalf("accepted %q", tt.args)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestServeSharesPort runs serve with [web] and proxy_protocol_from from a
// file and checks the wiring end to end: a load balancer's PROXY header
// names the client, and plain HTTP on the tcp+tls port reaches the web
// backend with a PROXY v2 header naming that same client.
func TestServeSharesPort(t *testing.T) {
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	seen := make(chan string, 1)
	go func() {
		c, err := backend.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		h, err := proxyproto.Read(br)
		if err != nil {
			seen <- "no PROXY header: " + err.Error()
			return
		}
		if _, err := http.ReadRequest(br); err != nil {
			seen <- "no request: " + err.Error()
			return
		}
		seen <- h.SourceAddr.String()
		_, _ = io.WriteString(c, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
	}()

	port := turntest.FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	path := writeFile(t, "c.toml", `listen = ["tcp+tls://`+addr+`"]
proxy_protocol_from = ["127.0.0.0/8"]
[auth]
secrets = ["s"]
[admin]
listen = "off"
[web]
backend = "`+backend.Addr().String()+`"
backend_proxy_protocol = true
turn_hosts = ["turn.example.org"]
`)
	startInProcess(t, path)

	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.IPv4(198, 51, 100, 9), Port: 4242}, c.RemoteAddr())
	if _, err := h.WriteTo(c); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: www.example.org\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("response %v, %v: want the backend's 204", resp, err)
	}
	select {
	case got := <-seen:
		if got != "198.51.100.9:4242" {
			t.Errorf("backend saw %q, want the client 198.51.100.9:4242", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the backend saw nothing")
	}
}

// TestICEURLsNameTheACMEDomain: with ACME and no ice_servers.host, the URLs
// handed out name the certificate's domain, which browsers check for turns:.
func TestICEURLsNameTheACMEDomain(t *testing.T) {
	s, err := settingsFor(t, "--acme", "--acme-domain", "Turn.Example.org", "--acme-domain", "other.example.org")
	if err != nil {
		t.Fatal(err)
	}
	bound := []relay.BoundListener{{Kind: relay.TCPTLS, Addr: &net.TCPAddr{IP: net.IPv4zero, Port: 443}}}
	urls, err := node.AdvertisedURLs(bound, s, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(urls, "turns:turn.example.org:443?transport=tcp") {
		t.Errorf("URLs %q do not name the ACME domain", urls)
	}

	path := writeFile(t, "c.toml", "[tls]\nacme = true\ndomains = [\"turn.example.org\"]\n")
	out, _, err := runCmd(t, "", "ice-servers", "--config", path, "--secret", "s")
	if err != nil {
		t.Fatalf("ice-servers: %v", err)
	}
	if !strings.Contains(out, "turns:turn.example.org:443?transport=tcp") {
		t.Errorf("ice-servers --config printed %s, want URLs naming the ACME domain", out)
	}
}
