package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/udpio"
)

// BoundListener is a listener that is bound and serving.
type BoundListener struct {
	Kind ListenerKind
	Addr net.Addr // the actual address, with the port the kernel chose for port 0
}

// Server is a STUN/TURN server: every listener of its Config, one shared
// allocation table, and the relay loops. Create it with New, run it with
// Start, and stop it by cancelling Start's context.
type Server struct {
	cfg      Config
	log      *slog.Logger
	table    *allocations.Table
	ports    *allocations.PortPool
	reserved *reservations // EVEN-PORT reservations (RFC 8656 §7.2)
	tls      *tls.Config
	software stun.Software
	relayCfg relayIPs // Config.RelayIP and RelayIPs by family
	primary  relayIPs // relay addresses for listeners bound to every address
	stats    stats
	life     lifecycle // readiness: see Ready

	answerLimit *sourceLimiter // per-source UDP answer limits; nil: unlimited
	authLog     *lineLimiter   // "authentication failed" lines
	epoch       time.Time      // start of the monotonic clock of the data plane
	usage       *usageTracker  // nil without Config.Usage

	// Replaced at run time by SetAuth and SetPolicy (configuration reload);
	// read on every request, and the policy on every packet.
	cert      atomic.Pointer[tls.Certificate] // served when ACME has none
	curAuth   atomic.Pointer[auth.Authenticator]
	curPolicy atomic.Pointer[auth.PeerPolicy]
	// own is the server's own addresses (self.go), set by Start before
	// anything is served; nil (nothing is own) before.
	own atomic.Pointer[ownAddrs]
	// acme manages the certificate when Config.ACME is set (acme.go).
	acme atomic.Pointer[acmeManager]
	// quic forwards what is not TURN on UDP listeners to Config.QUIC's
	// backend (quic.go); nil when off. Set by Start before serving.
	quic *quicRelay

	requests chan udpRequest // UDP control-plane work for the worker pool
	done     chan struct{}   // closed when the server has stopped

	// Data plane I/O (udp.go, datapath.go, txrun.go): receive batches and
	// send runs lent to relay loops while they forward, and whether UDP GSO
	// failed on this host.
	peerBatches *batchCache
	uring       *uringPool                 // io_uring reactors (io.go); nil: epoll
	kernel      atomic.Pointer[kernelPath] // the kernel fast path (kernelpath.go); nil: none
	gsoOff      atomic.Bool
	zones       *udpio.Zones // IPv6 zones of link-local addresses

	// TCP allocations' peer data connections by CONNECTION-ID (tcprelay.go).
	tcp tcpIndex

	// Goroutines, in the order shutdown stops them: readers (listener
	// loops and TCP/TLS connections) feed workers, and both create
	// allocations, whose relay loops end only when the table is closed.
	readers, workers, relays sync.WaitGroup

	// mu guards the following.
	mu      sync.Mutex
	bound   []BoundListener
	closers []func() error // listener sockets, closed on shutdown
	// udpListeners are the bound UDP listeners (udp.go).
	udpListeners []*udpListener
	// conns holds live TCP/TLS connections, each with the source address
	// it counts against in connsPerIP (none for exempt and backend ones).
	conns      map[net.Conn]connInfo
	connsPerIP map[netip.Addr]int
	clients    int  // accepted client connections, for MaxConns
	webConns   int  // client connections forwarded to the web backend, for WebConfig.MaxConns
	stopped    bool // shutdown has begun: refuse new conns
}

// New checks cfg and returns a server ready to Start.
func New(cfg Config) (*Server, error) {
	if cfg.Auth == nil {
		return nil, errors.New("relay: Config.Auth is required")
	}
	if cfg.Policy == nil {
		return nil, errors.New("relay: Config.Policy is required")
	}
	if len(cfg.Listeners) == 0 {
		cfg.Listeners = DefaultListeners()
		cfg.ListenersExplicit = false
	}
	if cfg.RelayPorts == (allocations.PortRange{}) {
		cfg.RelayPorts = allocations.PortRange{Low: 49152, High: 65535}
	}
	if cfg.DefaultLifetime <= 0 {
		cfg.DefaultLifetime = DefaultAllocationLifetime
	}
	if cfg.MaxLifetime <= 0 {
		cfg.MaxLifetime = DefaultMaxLifetime
	}
	if cfg.MaxLifetime < cfg.DefaultLifetime {
		return nil, fmt.Errorf("relay: maximum lifetime %v is shorter than the default lifetime %v: raise max_lifetime", cfg.MaxLifetime, cfg.DefaultLifetime)
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.Web.IdleTimeout <= 0 {
		cfg.Web.IdleTimeout = DefaultWebIdleTimeout
	}
	if cfg.Web.MaxConns == 0 {
		cfg.Web.MaxConns = DefaultWebMaxConns
	}
	if cfg.Software == "" {
		cfg.Software = "postern"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DefaultFamily > FamilyKeep {
		return nil, fmt.Errorf("relay: default address family %v: want ipv4, ipv6 or keep", cfg.DefaultFamily)
	}
	if cfg.QUIC.Backend != "" {
		if err := ValidateBackend(cfg.QUIC.Backend); err != nil {
			return nil, fmt.Errorf("relay: QUIC %w", err) // resolved by Start
		}
	}
	relayCfg, err := configuredRelayIPs(&cfg)
	if err != nil {
		return nil, err
	}
	s := &Server{
		relayCfg: relayCfg,
		cfg:      cfg,
		log:      cfg.Logger,
		ports:    allocations.NewPortPool(cfg.RelayPorts),
		software: stun.NewSoftware(cfg.Software),
		requests: make(chan udpRequest, 1024),
		done:     make(chan struct{}),
		conns:    make(map[net.Conn]connInfo),

		connsPerIP: make(map[netip.Addr]int),

		answerLimit: newSourceLimiter(cfg.UnauthenticatedRate, cfg.UnauthenticatedBurst, cfg.BindingRate, cfg.BindingBurst),
		authLog:     newLineLimiter(authLogRate, authLogBurst),
		epoch:       time.Now(),
	}
	s.peerBatches = newBatchCache()
	s.zones = &udpio.Zones{}
	s.curAuth.Store(cfg.Auth)
	s.curPolicy.Store(cfg.Policy)
	s.table = allocations.NewTable(allocations.Config{
		UserQuota:  cfg.UserQuota,
		IPQuota:    cfg.IPQuota,
		TotalQuota: cfg.TotalQuota,

		AllocationBandwidth: cfg.AllocationBandwidth,
		UserBandwidth:       cfg.UserBandwidth,
		Ports:               s.ports,
		OnRemove:            s.onRemove,
		BeforeClose:         s.kernelForget,
	})
	s.reserved = newReservations(s.ports, s.table)
	s.usage = newUsageTracker(cfg.Usage, cfg.UsageInterval, s.epoch)
	if err := s.newIO(cfg.IO); err != nil {
		return nil, err
	}
	return s, nil
}

// SetAuth replaces the credentials checked from the next request on (a
// configuration reload). Existing allocations stay; their later requests
// are checked against the new credentials.
func (s *Server) SetAuth(a *auth.Authenticator) {
	if a != nil {
		s.curAuth.Store(a)
	}
}

// SetPolicy replaces the peer policy. It applies to the next packet on
// every path, including permissions and channels made under the old one.
func (s *Server) SetPolicy(p *auth.PeerPolicy) {
	if p != nil {
		s.curPolicy.Store(p)
		s.kernelSyncAll()
	}
}

func (s *Server) auth() *auth.Authenticator { return s.curAuth.Load() }

func (s *Server) policy() *auth.PeerPolicy { return s.curPolicy.Load() }

// Table returns the server's allocation table (for tests and admin views).
func (s *Server) Table() *allocations.Table { return s.table }

// Addrs returns the listeners that are bound.
func (s *Server) Addrs() []BoundListener {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]BoundListener(nil), s.bound...)
}

// Start binds every listener and starts serving until ctx is cancelled.
// A listener named explicitly (Config.ListenersExplicit) that cannot bind is
// an error, and nothing is left running; a default one is logged with the
// remedy and skipped. Start fails too when no listener at all could bind.
func (s *Server) Start(ctx context.Context) error {
	tlsConf, err := s.tlsConfig()
	if err != nil {
		return err
	}
	s.tls = tlsConf
	s.primary = s.relayCfg
	if !s.primary.valid() {
		s.primary = s.choosePrimaryIPs()
	}
	if err := s.discoverExternal(ctx); err != nil {
		return err
	}
	if s.quic, err = s.newQUICRelay(); err != nil {
		return err
	}

	var udps []*udpListener
	var streams []*streamListener
	fail := func(err error) error {
		for _, c := range s.closers {
			_ = c()
		}
		return err
	}
	for _, spec := range s.cfg.Listeners {
		relayIP := s.relayIPFor(spec)
		switch spec.Kind {
		case UDP:
			l, err := s.listenUDP(spec, relayIP)
			if err != nil {
				if s.cfg.ListenersExplicit {
					return fail(err)
				}
				s.log.Warn("default listener skipped", "listener", spec.String(), "err", err)
				continue
			}
			udps = append(udps, l)
		default:
			l, err := s.listenStream(spec, relayIP)
			if err != nil {
				if s.cfg.ListenersExplicit {
					return fail(err)
				}
				s.log.Warn("default listener skipped", "listener", spec.String(), "err", err)
				continue
			}
			streams = append(streams, l)
		}
	}
	if len(s.bound) == 0 {
		return errors.New("relay: no listener could bind: see the warnings above, or name listeners with --listen")
	}
	if err := s.startACME(); err != nil {
		return fail(err)
	}
	if s.quic != nil {
		// After the listener sockets: no reader is left to open a flow.
		s.mu.Lock()
		s.closers = append(s.closers, s.quic.close)
		s.mu.Unlock()
	}

	s.own.Store(s.buildOwnAddrs())
	// Before the io_uring reactor: fail does not stop that.
	if err := s.startKernelPath(ctx); err != nil {
		return fail(err)
	}
	s.startUring(udps)

	for range 2 * runtime.GOMAXPROCS(0) {
		s.workers.Go(s.requestWorker)
	}
	for _, l := range udps {
		s.readers.Go(l.serve)
	}
	for _, l := range streams {
		s.readers.Go(l.serve)
	}
	janitorCtx, stopJanitor := context.WithCancel(context.Background())
	janitorDone := make(chan struct{})
	go func() {
		defer close(janitorDone)
		s.table.Run(janitorCtx)
	}()
	interimDone := make(chan struct{})
	go func() {
		defer close(interimDone)
		s.runInterim(janitorCtx)
	}()

	for _, b := range s.bound {
		s.log.Info("listening", "listener", b.Kind.String()+"://"+b.Addr.String())
	}
	go func() {
		<-ctx.Done()
		s.shutdown()
		stopJanitor()
		<-janitorDone
		<-interimDone
		close(s.done)
	}()
	s.life.started.Store(true)
	return nil
}

// Wait blocks until the server has stopped after its context was cancelled.
func (s *Server) Wait() error {
	<-s.done
	return nil
}

// shutdown closes every listener and connection, then every allocation.
func (s *Server) shutdown() {
	s.life.stopping.Store(true)
	s.mu.Lock()
	s.stopped = true
	closers := s.closers
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	s.stopACME()
	for _, c := range closers {
		_ = c()
	}
	for _, c := range conns {
		_ = c.Close()
	}
	s.readers.Wait()
	close(s.requests) // no reader is left to send
	s.workers.Wait()
	s.table.Close() // closes every relay socket: the relay loops end
	s.reserved.closeAll()
	s.relays.Wait()
	s.stopUring() // after the relay loops: none is left to hand it a socket
	s.log.Info("stopped")
}

// trackConn registers a connection (a client's, or ours to a web backend)
// for shutdown; false means the server is stopping and the connection must
// be closed.
func (s *Server) trackConn(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	s.conns[c] = connInfo{}
	return true
}

// connInfo is what a tracked connection counts against.
type connInfo struct {
	client bool       // an accepted client: counts against MaxConns
	web    bool       // an accepted client forwarded to the web backend: counts against WebConfig.MaxConns
	ip     netip.Addr // counts against MaxConnsPerIP when valid
}

// admitClient is trackConn for an accepted client connection, enforcing the
// connection caps (MaxConns in total, MaxConnsPerIP per source address):
// over a cap it returns errConnLimit and the caller closes the connection.
// Load balancers trusted for the PROXY protocol are exempt from the
// per-address cap, since they carry many clients.
func (s *Server) admitClient(c net.Conn) error {
	ip := tcpAddrPort(c.RemoteAddr()).Addr()
	if slices.ContainsFunc(s.cfg.ProxyProtocolFrom, func(p netip.Prefix) bool { return p.Contains(ip) }) {
		ip = netip.Addr{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.stopped:
		return net.ErrClosed
	case s.cfg.MaxConns > 0 && s.clients >= s.cfg.MaxConns:
		return fmt.Errorf("%w: %d client connections in total (max_conns)", errConnLimit, s.clients)
	case ip.IsValid() && s.cfg.MaxConnsPerIP > 0 && s.connsPerIP[ip] >= s.cfg.MaxConnsPerIP:
		return fmt.Errorf("%w: %d connections from %v (max_conns_per_ip)", errConnLimit, s.connsPerIP[ip], ip)
	}
	s.conns[c] = connInfo{client: true, ip: ip}
	s.clients++
	if ip.IsValid() {
		s.connsPerIP[ip]++
	}
	return nil
}

// errConnLimit: a TCP/TLS connection over MaxConns or MaxConnsPerIP.
var errConnLimit = errors.New("connection limit reached")

// untrackConn forgets a connection registered by trackConn or admitClient.
func (s *Server) untrackConn(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	info, ok := s.conns[c]
	if !ok {
		return
	}
	delete(s.conns, c)
	if info.client {
		s.clients--
	}
	if info.web {
		s.webConns--
	}
	if ip := info.ip; ip.IsValid() {
		if s.connsPerIP[ip]--; s.connsPerIP[ip] <= 0 {
			delete(s.connsPerIP, ip)
		}
	}
}

func (s *Server) onRemove(a *allocations.Allocation, why allocations.Reason) {
	s.kernelForget(a) // again (BeforeClose did it): a request's sync may have raced the removal
	s.stats.allocationEnded(a, why)
	s.releaseFleet(a)
	if s.usage != nil {
		s.usage.final(a, why, s.auth().Realm(), time.Now())
	}
	if why != allocations.ReasonDeleted {
		// An allocation over TCP/TLS whose lifetime ran out takes its
		// connection with it, and so does shutdown. A deletion (Refresh
		// with lifetime 0, the connection closing) leaves it open: RFC
		// 8656 §7.3, "If the 'desired lifetime' is zero, then the request
		// succeeds and the allocation is deleted", and "If the request
		// succeeds, then the server sends a success response", which a
		// closed connection would lose. The client may then allocate
		// again on it, as coturn allows; the idle timeout applies again
		// (serveStream). Kick closes the connection itself.
		closeSink(a)
	}
	// What it relayed each way, as coturn's session usage line: the first
	// question about a call that failed is which direction stopped.
	toPeer, toPeerBytes := a.ToPeer.Load()
	toClient, toClientBytes := a.ToClient.Load()
	s.log.Info("allocation ended", "id", a.ID, "user", a.Username, "client", a.FiveTuple.Client.String(),
		"transport", a.FiveTuple.Transport.String(), "relayed", relayedString(a), "reason", why.String(),
		"packets_to_peer", toPeer, "bytes_to_peer", toPeerBytes, "packets_to_client", toClient, "bytes_to_client", toClientBytes)
}

// closeSink closes a TCP/TLS client's connection (UDP sinks are shared and
// not closed).
func closeSink(a *allocations.Allocation) {
	if c, ok := a.Sink.(io.Closer); ok {
		_ = c.Close()
	}
}

// relayedString is an allocation's relayed address for logs, both of a
// dual allocation.
func relayedString(a *allocations.Allocation) string {
	if a.Half6 == nil {
		return a.Relayed.String()
	}
	return a.Relayed.String() + "," + a.Half6.Relayed.String()
}

// relayIPFor picks the addresses relay sockets bind on for allocations
// made through the listener spec, one per family: the configured relay
// addresses, else the listener's own address for its family when it is
// specific (and for the other family the loopback address if it is
// loopback, else the host's primary one), else the host's primary
// addresses.
func (s *Server) relayIPFor(spec ListenSpec) relayIPs {
	if s.relayCfg.valid() {
		return s.relayCfg
	}
	host, _, _ := net.SplitHostPort(spec.Addr)
	if host == "localhost" {
		return relayIPs{v4: netip.AddrFrom4([4]byte{127, 0, 0, 1}), v6: netip.IPv6Loopback()}
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.IsUnspecified() {
		return s.primary
	}
	ip = ip.Unmap()
	switch {
	case ip.IsLoopback():
		// Loopback relays to loopback, of either family: the relay IP for
		// IPv6 when the listener is [::1] is ::1, and 127.0.0.1 for IPv4.
		return relayIPs{v4: netip.AddrFrom4([4]byte{127, 0, 0, 1}), v6: netip.IPv6Loopback()}.with(ip)
	case ip.Is4():
		return relayIPs{v4: ip, v6: s.primary.v6}
	}
	return relayIPs{v4: s.primary.v4, v6: ip}
}

// with returns r with ip as the address of its family.
func (r relayIPs) with(ip netip.Addr) relayIPs {
	if ip.Is4() {
		r.v4 = ip
	} else {
		r.v6 = ip
	}
	return r
}

// choosePrimaryIPs finds the host's primary address of each family and
// logs the choice.
func (s *Server) choosePrimaryIPs() relayIPs {
	var r relayIPs
	ip, err4 := PrimaryIP()
	if err4 == nil {
		r.v4 = ip
	}
	ip6, err6 := PrimaryIP6()
	if err6 == nil {
		r.v6 = ip6
	}
	switch {
	case err4 != nil && err6 != nil:
		r.v4 = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		s.log.Warn("no default route: relaying on loopback only; set --relay-ip to the address peers can reach", "err", err4)
	case err4 != nil:
		s.log.Warn("no IPv4 default route: relaying IPv6 only, Allocate requests for IPv4 get 440; set --relay-ip, or [relay] default_family", "err", err4)
	}
	s.log.Info("relay addresses chosen from the default routes; set --relay-ip to override",
		"relay_ip", r.v4.String(), "relay_ip6", r.v6.String())
	return r
}

// PrimaryIP returns the host's primary IPv4 address: the source address of
// its default route. It sends nothing: connecting a UDP socket only asks the
// kernel for a route.
func PrimaryIP() (netip.Addr, error) {
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.MustParseAddrPort("192.0.2.1:9")))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("find primary address: %w", err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}

// PrimaryIP6 returns the host's primary IPv6 address: a global or unique
// local (ULA) address on a non-loopback interface, the source address of
// the default route when there is one (asked of the kernel as PrimaryIP
// does), else the first such address of an interface that is up. Link-local
// addresses do not count: peers off the link cannot reach them.
func PrimaryIP6() (netip.Addr, error) {
	if c, err := net.DialUDP("udp6", nil, net.UDPAddrFromAddrPort(netip.MustParseAddrPort("[2001:db8::1]:9"))); err == nil {
		ip := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr()
		_ = c.Close()
		if usableIPv6(ip) {
			return ip.WithZone(""), nil
		}
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("find primary IPv6 address: %w", err)
	}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok && usableIPv6(ip) {
					return ip, nil
				}
			}
		}
	}
	return netip.Addr{}, errors.New("find primary IPv6 address: no global or ULA IPv6 address on an interface that is up")
}

// usableIPv6 reports whether ip is an IPv6 address peers off this host can
// reach: global unicast (which includes ULA), not IPv4-mapped, not
// link-local.
func usableIPv6(ip netip.Addr) bool {
	return ip.Is6() && !ip.Is4In6() && ip.IsGlobalUnicast() && !ip.IsLinkLocalUnicast()
}

// bindError explains why a listener could not bind and what to do about it.
func bindError(spec ListenSpec, err error) error {
	switch {
	case errors.Is(err, syscall.EACCES):
		return fmt.Errorf("listener %s: %w: ports below 1024 need privilege: run `setcap cap_net_bind_service=+ep` on the binary, set AmbientCapabilities=CAP_NET_BIND_SERVICE in the systemd unit, or use another port", spec, err)
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("listener %s: %w: another process holds this port (find it with `ss -lntup`), stop it or choose another port", spec, err)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("listener %s: %w: the host has no such address: listen on one of its addresses or on all (udp://:PORT)", spec, err)
	}
	return fmt.Errorf("listener %s: %w", spec, err)
}
