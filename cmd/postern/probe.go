package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/pion/logging"
	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
	"github.com/urfave/cli/v3"

	"github.com/postern/postern/auth"
)

// Flags of the probe command.
const (
	flagProbeUser       = "user"
	flagProbePassword   = "password"
	flagProbeSecret     = "secret"
	flagProbeProxy      = "proxy"
	flagProbeJSON       = "json"
	flagProbeTimeout    = "timeout"
	flagProbeServerName = "server-name"
	flagProbeTURNPort   = "turn-port"
	flagProbeTURNSPort  = "turns-port"
	flagProbeAltPort    = "alt-port"
)

// Defaults of the probe command: the ports of RFC 7065 (turn: 3478,
// turns: 5349) and the port firewalls let out (443).
const (
	defaultProbeTimeout = 5 * time.Second
	defaultTURNPort     = 3478
	defaultTURNSPort    = 5349
	defaultAltPort      = 443
	// probeUser is the USER of the credential minted from --secret.
	probeUser = "postern-probe"
)

// errNoRelayPath is returned (so the exit status is 1) when no transport
// relayed: the user cannot count on this server from where they are.
var errNoRelayPath = errors.New("no relay path works from here")

func probeCommand() *cli.Command {
	return &cli.Command{
		Name:      "probe",
		Usage:     "test from here which transports and ports of a TURN server work",
		ArgsUsage: "HOST",
		Description: "Tries STUN and TURN on UDP 3478, TCP 3478, TLS 5349, UDP 443, TCP 443 and TLS 443 at once\n" +
			"(TCP and TLS through an HTTP CONNECT proxy with --proxy). With credentials, each allocates a relay\n" +
			"and sends a packet through it to itself. Prints a table and the iceServers that work from this\n" +
			"network. Exits 0 only if at least one relay path works.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: flagProbeUser, Usage: "long-term credential user `NAME`"},
			&cli.StringFlag{Name: flagProbePassword, Usage: "`PASSWORD` of --user"},
			&cli.StringFlag{Name: flagProbeSecret, Usage: "TURN REST API shared `SECRET`: mint a credential from it"},
			&cli.StringFlag{Name: flagProbeProxy, Usage: "reach TCP and TLS through the HTTP proxy at `URL` (http://[USER:PASS@]HOST:PORT, CONNECT)"},
			&cli.BoolFlag{Name: flagProbeJSON, Usage: "print the results as JSON"},
			&cli.DurationFlag{Name: flagProbeTimeout, Value: defaultProbeTimeout, Usage: "give each transport at most `D`"},
			&cli.StringFlag{Name: flagProbeServerName, Usage: "TLS server `NAME` (SNI) to ask for and verify", DefaultText: "HOST when it is a name"},
			&cli.IntFlag{Name: flagProbeTURNPort, Value: defaultTURNPort, Usage: "`PORT` of turn: over UDP and TCP"},
			&cli.IntFlag{Name: flagProbeTURNSPort, Value: defaultTURNSPort, Usage: "`PORT` of turns: (TLS)"},
			&cli.IntFlag{Name: flagProbeAltPort, Value: defaultAltPort, Usage: "the firewall-friendly `PORT` tried with UDP, TCP and TLS"},
		},
		OnUsageError: usageError,
		Action:       probeAction,
	}
}

// prober tries one server from here.
type prober struct {
	host       string // as given: a DNS name or an IP address (no brackets)
	serverName string // SNI and the name the certificate must carry
	user, pass string // empty: reachability only
	proxy      *url.URL
	timeout    time.Duration
}

// probeTarget is one transport and port to try.
type probeTarget struct {
	transport string // udp, tcp or tls
	port      int
}

// probeResult is what one target showed.
type probeResult struct {
	Transport string  `json:"transport"`
	Port      int     `json:"port"`
	URL       string  `json:"url"`
	Reachable bool    `json:"reachable"`
	RTTMillis float64 `json:"rtt_ms,omitempty"`
	// Relay is "yes", "no", "untested" (no credentials) or "" (not reachable).
	Relay   string `json:"relay,omitempty"`
	Mapped  string `json:"mapped_address,omitempty"`
	Relayed string `json:"relayed_address,omitempty"`
	// CertError says why a browser would refuse the TLS certificate.
	CertError string `json:"certificate_error,omitempty"`
	Error     string `json:"error,omitempty"`
}

// probeReport is the --json output.
type probeReport struct {
	Host       string        `json:"host"`
	Proxy      string        `json:"proxy,omitempty"`
	Results    []probeResult `json:"results"`
	ICEServers iceServers    `json:"ice_servers"`
}

func probeAction(ctx context.Context, cmd *cli.Command) error {
	if cmd.NArg() != 1 {
		return fmt.Errorf("probe takes one argument, the server's HOST (name or address), got %d", cmd.NArg())
	}
	p, err := newProber(cmd)
	if err != nil {
		return err
	}
	targets := []probeTarget{
		{"udp", int(cmd.Int(flagProbeTURNPort))},
		{"tcp", int(cmd.Int(flagProbeTURNPort))},
		{"tls", int(cmd.Int(flagProbeTURNSPort))},
		{"udp", int(cmd.Int(flagProbeAltPort))},
		{"tcp", int(cmd.Int(flagProbeAltPort))},
		{"tls", int(cmd.Int(flagProbeAltPort))},
	}
	for _, t := range targets {
		if t.port <= 0 || t.port > 65535 {
			return fmt.Errorf("port %d: write a port from 1 to 65535", t.port)
		}
	}
	results := p.run(ctx, targets)
	ice := p.iceServers(results)
	out := cmd.Root().Writer
	if cmd.Bool(flagProbeJSON) {
		rep := probeReport{Host: p.host, Results: results, ICEServers: ice}
		if p.proxy != nil {
			rep.Proxy = redactedURL(p.proxy)
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else if err := p.printTable(out, results, ice); err != nil {
		return err
	}
	for _, r := range results {
		if r.Relay == "yes" {
			return nil
		}
	}
	if p.user == "" {
		return fmt.Errorf("%w: no credentials were given, so only reachability was tested (add --%s and --%s, or --%s)",
			errNoRelayPath, flagProbeUser, flagProbePassword, flagProbeSecret)
	}
	return errNoRelayPath
}

func newProber(cmd *cli.Command) (*prober, error) {
	host := strings.TrimSuffix(strings.TrimPrefix(cmd.Args().First(), "["), "]")
	if host == "" || strings.ContainsAny(host, "/ ") {
		return nil, fmt.Errorf("HOST %q: write a DNS name or an IP address, without scheme or port", cmd.Args().First())
	}
	if _, _, err := net.SplitHostPort(host); err == nil && net.ParseIP(host) == nil {
		return nil, fmt.Errorf("HOST %q: write the host without a port; ports are --%s, --%s and --%s", host, flagProbeTURNPort, flagProbeTURNSPort, flagProbeAltPort)
	}
	p := &prober{host: host, timeout: cmd.Duration(flagProbeTimeout), serverName: cmd.String(flagProbeServerName)}
	if p.timeout <= 0 {
		return nil, fmt.Errorf("--%s %v: write a positive duration such as 5s", flagProbeTimeout, p.timeout)
	}
	if p.serverName == "" && net.ParseIP(host) == nil {
		p.serverName = host
	}
	user, pass, secret := cmd.String(flagProbeUser), cmd.String(flagProbePassword), cmd.String(flagProbeSecret)
	switch {
	case secret != "" && (user != "" || pass != ""):
		return nil, fmt.Errorf("give either --%s and --%s, or --%s", flagProbeUser, flagProbePassword, flagProbeSecret)
	case secret != "":
		p.user, p.pass = auth.MintREST(secret, probeUser, time.Hour, time.Now())
	case (user == "") != (pass == ""):
		return nil, fmt.Errorf("--%s and --%s go together", flagProbeUser, flagProbePassword)
	default:
		p.user, p.pass = user, pass
	}
	if v := cmd.String(flagProbeProxy); v != "" {
		u, err := url.Parse(v)
		if err != nil || u.Scheme != "http" || u.Host == "" {
			return nil, fmt.Errorf("--%s %q: write http://HOST:PORT (an HTTP proxy that allows CONNECT)", flagProbeProxy, v)
		}
		if u.Port() == "" {
			u.Host = net.JoinHostPort(u.Hostname(), "80")
		}
		p.proxy = u
	}
	return p, nil
}

// run probes every target at once and returns the results in target order.
func (p *prober) run(ctx context.Context, targets []probeTarget) []probeResult {
	results := make([]probeResult, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			tctx, cancel := context.WithTimeout(ctx, p.timeout)
			defer cancel()
			results[i] = p.probe(tctx, t)
		})
	}
	wg.Wait()
	return results
}

// url is the ICE URL of a target (RFC 7064, RFC 7065).
func (p *prober) url(t probeTarget) string {
	hp := net.JoinHostPort(p.host, strconv.Itoa(t.port))
	switch t.transport {
	case "udp":
		return "turn:" + hp + "?transport=udp"
	case "tcp":
		return "turn:" + hp + "?transport=tcp"
	}
	return "turns:" + hp + "?transport=tcp"
}

// probe tries one target: reach it (a STUN Binding, timed), then, with
// credentials, allocate and send a packet through the relay to itself.
func (p *prober) probe(ctx context.Context, t probeTarget) probeResult {
	r := probeResult{Transport: t.transport, Port: t.port, URL: p.url(t)}
	if t.transport == "udp" && p.proxy != nil {
		r.Error = "skipped: UDP cannot pass an HTTP proxy"
		return r
	}
	conn, server, err := p.dial(ctx, t, &r)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}

	quiet := logging.NewDefaultLoggerFactory()
	quiet.DefaultLogLevel = logging.LogLevelDisabled
	client, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server,
		TURNServerAddr: server,
		Conn:           conn,
		Username:       p.user,
		Password:       p.pass,
		LoggerFactory:  quiet,
		Software:       "postern-probe/" + version(),
	})
	if err != nil {
		r.Error = err.Error()
		return r
	}
	defer client.Close()
	if err := client.Listen(); err != nil {
		r.Error = err.Error()
		return r
	}

	// Reachable: a STUN Binding answered (RFC 8489 §3).
	start := time.Now()
	mapped, err := binding(ctx, client)
	if err != nil {
		r.Error = "STUN binding: " + explain(ctx, err)
		return r
	}
	r.Reachable = true
	r.RTTMillis = float64(time.Since(start).Microseconds()) / 1000
	r.Mapped = mapped
	if p.user == "" {
		r.Relay = "untested"
		return r
	}

	// The relay: allocate (RFC 8656 §7), then send a packet from the
	// relayed address to itself and wait for it to come back.
	r.Relay = "no"
	relayConn, err := client.AllocateWithContext(ctx)
	if err != nil {
		r.Error = "allocate: " + explain(ctx, err)
		return r
	}
	defer relayConn.Close()
	r.Relayed = relayConn.LocalAddr().String()
	if err := relayEcho(ctx, relayConn); err != nil {
		r.Error = "relay round trip: " + explain(ctx, err)
		return r
	}
	r.Relay = "yes"
	return r
}

// binding sends one STUN Binding request and returns XOR-MAPPED-ADDRESS.
func binding(ctx context.Context, c *turn.Client) (string, error) {
	msg, err := stun.Build(stun.TransactionID, stun.BindingRequest)
	if err != nil {
		return "", err
	}
	res, err := c.PerformTransactionWithContext(msg, c.STUNServerAddr(), false, ctx)
	if err != nil {
		return "", err
	}
	var mapped stun.XORMappedAddress
	if err := mapped.GetFrom(res.Msg); err != nil {
		return "", fmt.Errorf("answer without XOR-MAPPED-ADDRESS: %w", err)
	}
	return mapped.String(), nil
}

// relayEcho sends a random payload from relayConn to its own relayed
// address until it comes back or ctx ends.
func relayEcho(ctx context.Context, relayConn net.PacketConn) error {
	want := make([]byte, 32)
	_, _ = rand.Read(want)
	buf := make([]byte, 1500)
	for {
		if _, err := relayConn.WriteTo(want, relayConn.LocalAddr()); err != nil {
			return err
		}
		wait := time.Now().Add(500 * time.Millisecond)
		if d, ok := ctx.Deadline(); ok && d.Before(wait) {
			wait = d
		}
		_ = relayConn.SetReadDeadline(wait)
		for {
			n, _, err := relayConn.ReadFrom(buf)
			if err != nil {
				break
			}
			if bytes.Equal(buf[:n], want) {
				return nil
			}
		}
		if ctx.Err() != nil {
			return errors.New("the packet never came back (the server may refuse to relay to its own address: check its peer policy)")
		}
	}
}

// explain words err, naming a timeout as such.
func explain(ctx context.Context, err error) string {
	if ctx.Err() != nil {
		return "no answer (timed out)"
	}
	return err.Error()
}

// dial opens the client side of target: a UDP socket, or a TCP (through
// the proxy if any) or TLS stream framed as STUN packets. It returns the
// connection and the server address the TURN client talks to.
func (p *prober) dial(ctx context.Context, t probeTarget, r *probeResult) (net.PacketConn, string, error) {
	hp := net.JoinHostPort(p.host, strconv.Itoa(t.port))
	if t.transport == "udp" {
		addr, err := net.DefaultResolver.LookupNetIP(ctx, "ip", p.host)
		if err != nil || len(addr) == 0 {
			return nil, "", fmt.Errorf("resolve %s: %w", p.host, err)
		}
		network := "udp4"
		if addr[0].Unmap().Is6() {
			network = "udp6"
		}
		pc, err := net.ListenPacket(network, "")
		if err != nil {
			return nil, "", err
		}
		return pc, net.JoinHostPort(addr[0].Unmap().String(), strconv.Itoa(t.port)), nil
	}
	var c net.Conn
	var err error
	if p.proxy != nil {
		c, err = dialConnect(ctx, p.proxy, hp)
	} else {
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp", hp)
	}
	if err != nil {
		return nil, "", err
	}
	server := c.RemoteAddr().String() // only a label for a stream: writes ignore it
	if t.transport == "tls" {
		tc, err := p.handshake(ctx, c, r)
		if err != nil {
			_ = c.Close()
			return nil, "", err
		}
		c = tc
	}
	return turn.NewSTUNConn(c), server, nil
}

// handshake runs TLS on c. A certificate this machine does not trust does
// not stop the probe (the relay may still be tested), but it is recorded:
// browsers would refuse it.
func (p *prober) handshake(ctx context.Context, c net.Conn, r *probeResult) (*tls.Conn, error) {
	conf := &tls.Config{
		ServerName:         p.serverName,
		InsecureSkipVerify: true, //nolint:gosec // verified by hand below, to report rather than fail
		VerifyConnection: func(cs tls.ConnectionState) error {
			r.CertError = verifyPeer(cs, p.serverName, p.host)
			return nil
		},
	}
	tc := tls.Client(c, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return tc, nil
}

// verifyPeer returns why the peer's certificate would be refused for name
// (or, without a name, for the address host), or "" when it is valid.
func verifyPeer(cs tls.ConnectionState, name, host string) string {
	if len(cs.PeerCertificates) == 0 {
		return "no certificate"
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	dnsName := name
	if dnsName == "" {
		dnsName = host
	}
	if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: dnsName, Intermediates: inter}); err != nil {
		return err.Error()
	}
	return ""
}

// dialConnect opens a tunnel to target through an HTTP proxy (RFC 9110
// §9.3.6, CONNECT).
func dialConnect(ctx context.Context, proxy *url.URL, target string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", proxy.Host)
	if err != nil {
		return nil, fmt.Errorf("proxy %s: %w", proxy.Host, err)
	}
	if deadline, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(deadline)
	}
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n"
	if u := proxy.User; u != nil {
		pass, _ := u.Password()
		req += "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pass)) + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("proxy %s: %w", proxy.Host, err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("proxy %s: %w", proxy.Host, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_ = c.Close()
		return nil, fmt.Errorf("proxy %s refused CONNECT %s: %s", proxy.Host, target, resp.Status)
	}
	_ = c.SetDeadline(time.Time{})
	if br.Buffered() > 0 {
		return &bufferedConn{Conn: c, r: br}, nil
	}
	return c, nil
}

// bufferedConn is a connection some of whose bytes were read into r.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// iceServers returns what works from here: stun: for each UDP port that
// answered, and the turn:/turns: URL of each target that relayed (or,
// without credentials, answered). A turns: URL whose certificate this
// machine refuses is left out: browsers refuse it too.
func (p *prober) iceServers(results []probeResult) iceServers {
	var urls []string
	for _, r := range results {
		if r.Transport == "udp" && r.Reachable {
			urls = append(urls, "stun:"+net.JoinHostPort(p.host, strconv.Itoa(r.Port)))
		}
	}
	for _, r := range results {
		works := r.Relay == "yes" || r.Relay == "untested"
		if works && r.CertError == "" {
			urls = append(urls, r.URL)
		}
	}
	s := iceServer{URLs: urls}
	if p.user != "" {
		s.Username, s.Credential = p.user, p.pass
	}
	if len(urls) == 0 {
		return iceServers{ICEServers: []iceServer{}}
	}
	return iceServers{ICEServers: []iceServer{s}}
}

// printTable writes the human-readable report.
func (p *prober) printTable(w io.Writer, results []probeResult, ice iceServers) error {
	fmt.Fprintf(w, "Probing %s", p.host)
	if p.proxy != nil {
		fmt.Fprintf(w, " through the HTTP proxy %s", redactedURL(p.proxy))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TRANSPORT\tPORT\tREACHABLE\tRTT\tRELAY\tDETAIL")
	for _, r := range results {
		reach, rtt, relay := "no", "-", "-"
		if r.Reachable {
			reach = "yes"
			rtt = strconv.FormatFloat(r.RTTMillis, 'f', 1, 64) + " ms"
		}
		if r.Relay != "" {
			relay = r.Relay
		}
		var details []string
		if r.CertError != "" {
			details = append(details, "certificate refused, browsers will not use it: "+r.CertError)
		}
		if r.Error != "" {
			details = append(details, r.Error)
		} else if r.Relayed != "" {
			details = append(details, "relayed via "+r.Relayed)
		}
		detail := strings.Join(details, "; ")
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", r.Transport, r.Port, reach, rtt, relay, detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if len(ice.ICEServers) == 0 {
		_, err := fmt.Fprintln(w, "Nothing works from here: no iceServers to suggest.")
		return err
	}
	if p.user == "" {
		fmt.Fprintln(w, "iceServers that answered from here (relaying not tested: no credentials):")
	} else {
		fmt.Fprintln(w, "iceServers that work from here:")
	}
	b, err := json.Marshal(ice)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// redactedURL hides a proxy password.
func redactedURL(u *url.URL) string { return u.Redacted() }
