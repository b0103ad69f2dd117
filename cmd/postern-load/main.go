package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole command; it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "table":
			return runTable(args[1:], stdout, stderr)
		case "selfsigned":
			return runSelfSigned(args[1:], stderr)
		}
	}
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "postern-load:", err)
		return 2
	}
	modes := map[string]func(context.Context, *config) (*result, error){
		"relay": runRelay, "setup": runSetup, "idle": runIdle, "ping": runPing,
	}
	r, err := modes[cfg.mode](ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "postern-load: %s: %v\n", cfg.mode, err)
		return 1
	}
	if cfg.json {
		enc := json.NewEncoder(stdout)
		if err := enc.Encode(r); err != nil {
			fmt.Fprintln(stderr, "postern-load:", err)
			return 1
		}
		return 0
	}
	r.print(stdout)
	return 0
}

// config is the parsed command line.
type config struct {
	mode, transport, server string
	creds                   creds
	allocations             int
	size                    int
	rate                    float64
	window                  int
	indications             bool
	duration, warmup, hold  time.Duration
	timeout                 time.Duration
	setupConcurrency        int
	workers                 int
	gso                     bool
	cleanup                 bool
	insecure                bool
	serverName              string
	peerIP                  netip.Addr
	serverCPU               int // -1: none
	sourceBase              netip.Addr
	pid                     string
	json                    bool
	label, scenario         string
	sources                 int
	clkTck                  float64
}

const usage = `postern-load: a TURN load generator (see README.md, "Load generator")

Usage:
  postern-load [flags]                    run one measurement (-mode relay, setup, idle or ping)
  postern-load table [flags] RESULTS...   render JSON results of two servers as a Markdown table
  postern-load selfsigned DIR             write cert.pem and key.pem (ECDSA P-256, CN localhost) to DIR

Flags:
`

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	cfg := &config{clkTck: clockTicks()}
	fs := flag.NewFlagSet("postern-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	var user, peerIP, pid, sourceBase string
	var rate string
	fs.StringVar(&cfg.mode, "mode", "relay", "what to measure: relay (stream packets through allocations), setup (Allocate/s), idle (server memory per idle allocation) or ping (wait for a STUN answer)")
	fs.StringVar(&cfg.transport, "transport", "udp", "client transport to the server: udp, tcp or tls (relay mode; setup and idle use udp)")
	fs.StringVar(&cfg.server, "server", "127.0.0.1:3478", "server address HOST:PORT (the TLS port for -transport tls)")
	fs.StringVar(&user, "user", "", "long-term credentials NAME:PASSWORD (required except for ping)")
	fs.IntVar(&cfg.allocations, "allocations", 1, "allocations, each streaming to its own peer (relay) or held idle (idle)")
	fs.IntVar(&cfg.size, "size", 100, "payload bytes per packet (at least 16: sequence and timestamp)")
	fs.StringVar(&rate, "rate", "0", "total packets per second the clients send, e.g. 20000 or 20k; 0 = flat out (each allocation keeps -window packets in flight)")
	fs.IntVar(&cfg.window, "window", 0, "flat out: packets in flight per allocation (0 = 128/allocations, at least 1)")
	fs.BoolVar(&cfg.indications, "indications", false, "use Send/Data indications instead of ChannelData")
	fs.DurationVar(&cfg.duration, "duration", 5*time.Second, "how long to measure (after -warmup)")
	fs.DurationVar(&cfg.warmup, "warmup", time.Second, "traffic before measuring starts")
	fs.DurationVar(&cfg.hold, "hold", 2*time.Second, "idle mode: how long to hold the allocations before reading the server's memory")
	fs.DurationVar(&cfg.timeout, "timeout", 5*time.Second, "limit for one request (and for ping, for the whole wait)")
	fs.IntVar(&cfg.setupConcurrency, "concurrency", 16, "clients setting up allocations at once (setup mode: the measured concurrency)")
	fs.IntVar(&cfg.workers, "workers", runtime.GOMAXPROCS(0), "UDP data path threads (one epoll loop each)")
	fs.BoolVar(&cfg.gso, "gso", true, "send the generator's own UDP in GSO batches (UDP generic segmentation offload); the server still receives separate datagrams")
	fs.BoolVar(&cfg.cleanup, "cleanup", true, "relay mode: delete the allocations at the end (Refresh lifetime 0)")
	fs.BoolVar(&cfg.insecure, "insecure", false, "TLS: do not verify the server certificate (self-signed test servers)")
	fs.StringVar(&cfg.serverName, "servername", "", "TLS: server name to verify (default: the host of -server)")
	fs.StringVar(&peerIP, "peer-ip", "127.0.0.2", "address the peers bind (the server must allow relaying to it; not the server's own address, where Postern relays only to relay ports)")
	fs.IntVar(&cfg.sources, "sources", 254, "against a loopback server: spread new clients over this many source addresses 127.0.1.1, 127.0.1.2, ... (as a real server sees many client addresses; a 5-tuple reused within seconds can meet the server's memory of the last allocation)")
	fs.StringVar(&sourceBase, "source-base", "", "spread new clients over -sources addresses from this IPv4 address up (they must be this host's, e.g. a local route); default: 127.0.1.1 up against a loopback server, else one address")
	fs.IntVar(&cfg.serverCPU, "server-cpu", -1, "the CPU the server is pinned to: report that CPU's busy time (the server's process and the kernel's work steered there, e.g. by RPS; a kernel fast path runs there) per million packets")
	fs.StringVar(&pid, "pid", "", "server process id: report its CPU seconds (per million packets) and memory from /proc")
	fs.BoolVar(&cfg.json, "json", false, "print the result as one JSON object")
	fs.StringVar(&cfg.label, "label", "", "server label copied into the result (e.g. postern, coturn)")
	fs.StringVar(&cfg.scenario, "scenario", "", "scenario name copied into the result")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags come as -name value)", fs.Arg(0))
	}
	var err error
	if cfg.rate, err = parseCount(rate); err != nil || cfg.rate < 0 {
		return nil, fmt.Errorf("-rate %q: want a packet rate such as 20000 or 20k", rate)
	}
	switch cfg.mode {
	case "relay", "setup", "idle", "ping":
	default:
		return nil, fmt.Errorf("-mode %q: want relay, setup, idle or ping", cfg.mode)
	}
	switch cfg.transport {
	case "udp", "tcp", "tls":
	default:
		return nil, fmt.Errorf("-transport %q: want udp, tcp or tls", cfg.transport)
	}
	if cfg.mode != "relay" {
		cfg.transport = "udp"
	}
	if cfg.mode != "ping" {
		name, pass, ok := strings.Cut(user, ":")
		if !ok || name == "" {
			return nil, errors.New("-user NAME:PASSWORD is required (the server's long-term credentials)")
		}
		cfg.creds = creds{user: name, password: pass}
	}
	if cfg.allocations < 1 {
		return nil, fmt.Errorf("-allocations %d: want at least 1", cfg.allocations)
	}
	if cfg.size < payloadHeader || cfg.size > 65000 {
		return nil, fmt.Errorf("-size %d: want %d to 65000 bytes", cfg.size, payloadHeader)
	}
	if cfg.duration <= 0 || cfg.warmup < 0 {
		return nil, errors.New("-duration must be positive and -warmup not negative")
	}
	cfg.setupConcurrency = max(1, cfg.setupConcurrency)
	cfg.sources = min(max(1, cfg.sources), 254)
	cfg.workers = max(1, cfg.workers)
	if cfg.peerIP, err = netip.ParseAddr(peerIP); err != nil {
		return nil, fmt.Errorf("-peer-ip %q: %w", peerIP, err)
	}
	if sourceBase != "" {
		if cfg.sourceBase, err = netip.ParseAddr(sourceBase); err != nil || !cfg.sourceBase.Is4() {
			return nil, fmt.Errorf("-source-base %q: want an IPv4 address", sourceBase)
		}
		if int(cfg.sourceBase.As4()[3])+cfg.sources-1 > 255 {
			return nil, fmt.Errorf("-source-base %s with -sources %d: the addresses pass .255", sourceBase, cfg.sources)
		}
	}
	if pid != "" {
		if _, err := strconv.Atoi(pid); err != nil {
			return nil, fmt.Errorf("-pid %q: want a process id", pid)
		}
		cfg.pid = pid
	}
	return cfg, nil
}

// source returns the source address of the n-th new client: one of cfg.sources addresses from -source-base, or in
// 127.0.1.0/24 when the server is on IPv4 loopback, else the zero Addr (the kernel chooses).
func (c *config) source(n uint64) netip.Addr {
	if c.sourceBase.Is4() && c.sources > 1 {
		b := c.sourceBase.As4()
		b[3] += byte(n % uint64(c.sources))
		return netip.AddrFrom4(b)
	}
	host, _, err := net.SplitHostPort(c.server)
	if err != nil || c.sources <= 1 {
		return netip.Addr{}
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.Is4() || !ip.IsLoopback() {
		return netip.Addr{}
	}
	return netip.AddrFrom4([4]byte{127, 0, 1, byte(1 + n%uint64(c.sources))})
}

// parseCount parses 20000, 20k or 1.5M.
func parseCount(s string) (float64, error) {
	mult := 1.0
	switch {
	case strings.HasSuffix(s, "k"):
		mult, s = 1e3, strings.TrimSuffix(s, "k")
	case strings.HasSuffix(s, "M"):
		mult, s = 1e6, strings.TrimSuffix(s, "M")
	}
	v, err := strconv.ParseFloat(s, 64)
	return v * mult, err
}

func (c *config) tlsConfig() *tls.Config {
	name := c.serverName
	if name == "" {
		name, _, _ = net.SplitHostPort(c.server)
	}
	return &tls.Config{ServerName: name, InsecureSkipVerify: c.insecure, MinVersion: tls.VersionTLS12} //nolint:gosec // opt-in, for self-signed test servers
}

// result is one measurement. Times are in seconds, RTTs in microseconds,
// memory in KiB unless named otherwise.
type result struct {
	Label       string  `json:"label,omitempty"`
	Scenario    string  `json:"scenario,omitempty"`
	Mode        string  `json:"mode"`
	Transport   string  `json:"transport"`
	Allocations int     `json:"allocations"`
	Size        int     `json:"size,omitempty"`
	Indications bool    `json:"indications,omitempty"`
	OfferedPPS  float64 `json:"offered_pps,omitempty"` // 0: flat out
	Concurrency int     `json:"concurrency,omitempty"` // setup mode

	Seconds      float64 `json:"seconds,omitempty"`
	SetupSeconds float64 `json:"setup_seconds,omitempty"`
	Sent         uint64  `json:"sent,omitempty"`
	ToPeer       uint64  `json:"to_peer,omitempty"`
	ToClient     uint64  `json:"to_client,omitempty"`
	Lost         uint64  `json:"lost,omitempty"`
	SendErrors   uint64  `json:"send_errors,omitempty"`
	RelayedPPS   float64 `json:"relayed_pps,omitempty"` // both directions
	Mbps         float64 `json:"mbps,omitempty"`        // payload bits, both directions
	Loss         float64 `json:"loss,omitempty"`        // 1 - returned/sent
	RTTp50       float64 `json:"rtt_p50_us,omitempty"`
	RTTp99       float64 `json:"rtt_p99_us,omitempty"`
	RTTp999      float64 `json:"rtt_p999_us,omitempty"`
	RTTSamples   uint64  `json:"rtt_samples,omitempty"`
	AllocsPerSec float64 `json:"allocs_per_sec,omitempty"`
	Errors       uint64  `json:"errors,omitempty"`
	FirstError   string  `json:"first_error,omitempty"`

	ServerCPUSeconds float64 `json:"server_cpu_seconds,omitempty"`
	ServerUtil       float64 `json:"server_util,omitempty"` // CPU seconds per second
	ServerCPUPerMpkt float64 `json:"server_cpu_per_mpkt,omitempty"`
	ServerRSSKiB     int64   `json:"server_rss_kib,omitempty"`
	ServerHWMKiB     int64   `json:"server_hwm_kib,omitempty"`
	BaselineRSSKiB   int64   `json:"baseline_rss_kib,omitempty"`
	RSSPerAllocB     float64 `json:"rss_per_alloc_bytes,omitempty"`
	LoadCPUSeconds   float64 `json:"load_cpu_seconds,omitempty"`
	// MachineCPUSeconds is the busy time of every CPU, the generator's
	// and the kernel's work included (readMachineCPU).
	MachineCPUSeconds float64 `json:"machine_cpu_seconds,omitempty"`
	MachineCPUPerMpkt float64 `json:"machine_cpu_per_mpkt,omitempty"`
	// ServerCPUBusySeconds is the busy time of the server's CPU
	// (-server-cpu): the server process and the kernel's work there.
	ServerCPUBusySeconds float64 `json:"server_cpu_busy_seconds,omitempty"`
	ServerCPUBusyPerMpkt float64 `json:"server_cpu_busy_per_mpkt,omitempty"`
}

func (c *config) newResult() *result {
	r := &result{
		Label: c.label, Scenario: c.scenario, Mode: c.mode, Transport: c.transport,
		Allocations: c.allocations, OfferedPPS: c.rate,
	}
	switch c.mode {
	case "relay":
		r.Size, r.Indications = c.size, c.indications
	case "setup":
		r.Concurrency, r.Allocations = c.setupConcurrency, 0
	}
	return r
}

// print writes the result for a person.
func (r *result) print(w io.Writer) {
	switch r.Mode {
	case "ping":
		fmt.Fprintln(w, "server answered")
		return
	case "relay":
		kind := "ChannelData"
		if r.Indications {
			kind = "Send/Data indications"
		}
		offered := "flat out"
		if r.OfferedPPS > 0 {
			offered = fmt.Sprintf("%.0f pkt/s offered", r.OfferedPPS)
		}
		fmt.Fprintf(w, "relay: %s, %s, %d B payload, %d allocations, %s, %.1f s measured (set up in %.2f s)\n",
			strings.ToUpper(r.Transport), kind, r.Size, r.Allocations, offered, r.Seconds, r.SetupSeconds)
		fmt.Fprintf(w, "  relayed     %.0f pkt/s (client->peer %d, peer->client %d), %.1f Mbit/s payload\n",
			r.RelayedPPS, r.ToPeer, r.ToClient, r.Mbps)
		fmt.Fprintf(w, "  loss        %.3f%% round trip (sent %d, lost in stalls %d, local send errors %d)\n",
			100*r.Loss, r.Sent, r.Lost, r.SendErrors)
		fmt.Fprintf(w, "  rtt         p50 %.0f µs, p99 %.0f µs, p99.9 %.0f µs (%d samples)\n", r.RTTp50, r.RTTp99, r.RTTp999, r.RTTSamples)
	case "setup":
		fmt.Fprintf(w, "setup: %.0f Allocate/s (authenticated, with the 401 round trip) over %.1f s, %d errors\n",
			r.AllocsPerSec, r.Seconds, r.Errors)
		if r.FirstError != "" {
			fmt.Fprintf(w, "  first error %s\n", r.FirstError)
		}
		fmt.Fprintf(w, "  latency     p50 %.0f µs, p99 %.0f µs, p99.9 %.0f µs\n", r.RTTp50, r.RTTp99, r.RTTp999)
	case "idle":
		fmt.Fprintf(w, "idle: %d allocations set up in %.1f s (%.0f/s)\n", r.Allocations, r.SetupSeconds, r.AllocsPerSec)
		fmt.Fprintf(w, "  server RSS  %.1f MiB (baseline %.1f MiB): %.0f bytes per allocation; peak %.1f MiB\n",
			float64(r.ServerRSSKiB)/1024, float64(r.BaselineRSSKiB)/1024, r.RSSPerAllocB, float64(r.ServerHWMKiB)/1024)
		return
	}
	if r.ServerCPUSeconds > 0 {
		fmt.Fprintf(w, "  server      %.2f CPU s (%.0f%% of one core)", r.ServerCPUSeconds, 100*r.ServerUtil)
		if r.ServerCPUPerMpkt > 0 {
			fmt.Fprintf(w, ", %.2f CPU s per million packets", r.ServerCPUPerMpkt)
		}
		fmt.Fprintf(w, "; RSS %.1f MiB, peak %.1f MiB\n", float64(r.ServerRSSKiB)/1024, float64(r.ServerHWMKiB)/1024)
	}
	fmt.Fprintf(w, "  generator   %.2f CPU s\n", r.LoadCPUSeconds)
	if r.ServerCPUBusyPerMpkt > 0 {
		fmt.Fprintf(w, "  server CPU  %.2f CPU s busy (the server's CPU: its process and the kernel's work there), %.2f CPU s per million packets\n",
			r.ServerCPUBusySeconds, r.ServerCPUBusyPerMpkt)
	}
	if r.MachineCPUPerMpkt > 0 {
		fmt.Fprintf(w, "  machine     %.2f CPU s (all CPUs, generator and kernel included), %.2f CPU s per million packets\n",
			r.MachineCPUSeconds, r.MachineCPUPerMpkt)
	}
}
