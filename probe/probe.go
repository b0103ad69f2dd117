package probe

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/pion/logging"
	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/iceapi"
)

// RESTUser is the USER of the credential minted from Config.Secret
// (EXPIRY:postern-probe), so the server's logs and quotas tell probes apart.
const RESTUser = "postern-probe"

// restTTL is how long a minted credential stays valid: far longer than any
// probe runs.
const restTTL = time.Hour

// Config says which server to probe and how.
type Config struct {
	// Host is a DNS name or an IP address, without brackets or port.
	Host string
	// ServerName is the TLS server name (SNI) asked for and verified;
	// empty: Host when it is a name, else none (the certificate is then
	// verified for the address).
	ServerName string
	// User and Password are a long-term credential. Without a credential
	// (and without Secret) only reachability is tested.
	User, Password string
	// Secret is a TURN REST API shared secret to mint a credential for
	// RESTUser from, instead of User and Password.
	Secret string
	// Proxy, when set, is an HTTP proxy (http://[USER:PASS@]HOST[:PORT])
	// that TCP and TLS go through with CONNECT; UDP doors are then skipped.
	Proxy *url.URL
	// Timeout bounds each door. Required.
	Timeout time.Duration
	// Software is sent in the SOFTWARE attribute (RFC 8489 §14.14).
	Software string
}

// Prober tries one server from here. It is immutable after New and its Run
// may be called concurrently.
type Prober struct {
	host       string
	serverName string
	user, pass string // empty: reachability only
	proxy      *url.URL
	timeout    time.Duration
	software   string
}

// New checks cfg and returns a Prober.
func New(cfg Config) (*Prober, error) {
	if cfg.Host == "" {
		return nil, errors.New("probe: no host")
	}
	if cfg.Timeout <= 0 {
		return nil, fmt.Errorf("probe: timeout %v: want a positive duration", cfg.Timeout)
	}
	p := &Prober{host: cfg.Host, serverName: cfg.ServerName, timeout: cfg.Timeout, software: cfg.Software}
	if p.serverName == "" && net.ParseIP(cfg.Host) == nil {
		p.serverName = cfg.Host
	}
	switch {
	case cfg.Secret != "" && (cfg.User != "" || cfg.Password != ""):
		return nil, errors.New("probe: give either a user and password or a secret")
	case cfg.Secret != "":
		p.user, p.pass = auth.MintREST(cfg.Secret, RESTUser, restTTL, time.Now())
	case (cfg.User == "") != (cfg.Password == ""):
		return nil, errors.New("probe: a user and a password go together")
	default:
		p.user, p.pass = cfg.User, cfg.Password
	}
	if cfg.Proxy != nil {
		if cfg.Proxy.Scheme != "http" || cfg.Proxy.Host == "" {
			return nil, fmt.Errorf("probe: proxy %s: want http://HOST:PORT", cfg.Proxy.Redacted())
		}
		u := *cfg.Proxy
		if u.Port() == "" {
			u.Host = net.JoinHostPort(u.Hostname(), "80")
		}
		p.proxy = &u
	}
	return p, nil
}

// Run tries every door at once, each for at most the timeout, and reports
// the results in the order of doors.
func (p *Prober) Run(ctx context.Context, doors []Door) Report {
	results := make([]Result, len(doors))
	var wg sync.WaitGroup
	for i, d := range doors {
		wg.Go(func() {
			tctx, cancel := context.WithTimeout(ctx, p.timeout)
			defer cancel()
			results[i] = p.probe(tctx, d)
		})
	}
	wg.Wait()
	rep := Report{Host: p.host, Results: results, ICEServers: p.iceServers(doors, results)}
	if p.proxy != nil {
		rep.Proxy = p.proxy.Redacted() // never print the proxy's password
	}
	return rep
}

// probe tries one door: reach it (a STUN Binding, timed), then, with
// credentials, allocate and send a packet through the relay to itself.
func (p *Prober) probe(ctx context.Context, d Door) Result {
	r := Result{Transport: d.Transport, Port: d.Port, URL: d.URL(p.host)}
	if err := d.Check(); err != nil {
		r.Error = err.Error()
		return r
	}
	if d.Transport == UDP && p.proxy != nil {
		r.Error = WordSkippedByProxy
		return r
	}
	conn, server, err := p.dial(ctx, d, &r)
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
		Software:       p.software,
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
		r.Relay = RelayUntested
		return r
	}

	// The relay: allocate (RFC 8656 §7), then send a packet from the
	// relayed address to itself and wait for it to come back.
	r.Relay = RelayNo
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
	r.Relay = RelayYes
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
			return errors.New(WordNeverCameBack)
		}
	}
}

// explain words err, naming a timeout as such.
func explain(ctx context.Context, err error) string {
	if ctx.Err() != nil {
		return WordTimedOut
	}
	return err.Error()
}

// dial opens the client side of door: a UDP socket, or a TCP (through
// the proxy if any) or TLS stream framed as STUN packets. It returns the
// connection and the server address the TURN client talks to.
func (p *Prober) dial(ctx context.Context, d Door, r *Result) (net.PacketConn, string, error) {
	hp := net.JoinHostPort(p.host, strconv.Itoa(d.Port))
	if d.Transport == UDP {
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
		return pc, net.JoinHostPort(addr[0].Unmap().String(), strconv.Itoa(d.Port)), nil
	}
	var c net.Conn
	var err error
	if p.proxy != nil {
		c, err = dialConnect(ctx, p.proxy, hp)
	} else {
		var dialer net.Dialer
		c, err = dialer.DialContext(ctx, "tcp", hp)
	}
	if err != nil {
		return nil, "", err
	}
	server := c.RemoteAddr().String() // only a label for a stream: writes ignore it
	if d.Transport == TLS {
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
func (p *Prober) handshake(ctx context.Context, c net.Conn, r *Result) (*tls.Conn, error) {
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

// iceServers returns what works from here: stun: for each UDP door that
// answered, and the turn:/turns: URL of each door that relayed (or,
// without credentials, answered). A turns: URL whose certificate this
// machine refuses is left out: browsers refuse it too.
func (p *Prober) iceServers(doors []Door, results []Result) iceapi.Configuration {
	var urls []string
	for i, r := range results {
		if r.Transport == UDP && r.Reachable {
			urls = append(urls, doors[i].STUNURL(p.host))
		}
	}
	for _, r := range results {
		if r.Works() && r.CertError == "" {
			urls = append(urls, r.URL)
		}
	}
	if len(urls) == 0 {
		return iceapi.Configuration{ICEServers: []iceapi.ICEServer{}}
	}
	s := iceapi.ICEServer{URLs: urls}
	if p.user != "" {
		s.Username, s.Credential = p.user, p.pass
	}
	return iceapi.Configuration{ICEServers: []iceapi.ICEServer{s}}
}
