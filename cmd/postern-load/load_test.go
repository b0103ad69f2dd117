package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/turntest"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/relay/proto"
)

// End-to-end tests run the generator against a real Postern relay in this
// process, on 127.0.0.1 only, for a fraction of a second each.

const (
	testUser = "load"
	testPass = "load-Passw0rd"
)

// startRelay starts a relay.Server with UDP, TCP and TLS listeners and
// returns its addresses by kind.
func startRelay(t *testing.T) map[relay.ListenerKind]string {
	t.Helper()
	a, err := auth.New(auth.Config{Realm: "load.test", Users: map[string]string{testUser: testPass}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := relay.New(relay.Config{
		Listeners: []relay.ListenSpec{
			{Kind: relay.UDP, Addr: "127.0.0.1:0"},
			{Kind: relay.TCP, Addr: "127.0.0.1:0"},
			{Kind: relay.TLS, Addr: "127.0.0.1:0"},
		},
		ListenersExplicit: true,
		Auth:              a,
		Policy:            auth.NewPeerPolicy([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, nil),
		RelayIP:           netip.MustParseAddr("127.0.0.1"),
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	turntest.Start(t, s)
	addrs := map[relay.ListenerKind]string{}
	for _, b := range s.Addrs() {
		addrs[b.Kind] = b.Addr.String()
	}
	return addrs
}

// runJSON runs the command with -json and decodes its result.
func runJSON(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args = append([]string{"-json", "-user", testUser + ":" + testPass, "-warmup", "100ms", "-duration", "300ms"}, args...)
	if code := run(ctx, args, &out, &errb); code != 0 {
		t.Fatalf("postern-load %s: exit %d: %s", strings.Join(args, " "), code, errb.String())
	}
	var r result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("decode %q: %v", out.String(), err)
	}
	return r
}

func TestRelayModes(t *testing.T) {
	addrs := startRelay(t)
	pid := strconv.Itoa(os.Getpid()) // the server runs in this process
	cases := []struct {
		name string
		args []string
	}{
		{"udp channel flat", []string{"-server", addrs[relay.UDP], "-allocations", "4", "-size", "100"}},
		{"udp channel no gso", []string{"-server", addrs[relay.UDP], "-allocations", "2", "-size", "200", "-gso=false"}},
		{"udp indications", []string{"-server", addrs[relay.UDP], "-allocations", "2", "-size", "61", "-indications"}},
		{"udp paced", []string{"-server", addrs[relay.UDP], "-allocations", "3", "-rate", "2k"}},
		{"tcp channel", []string{"-server", addrs[relay.TCP], "-transport", "tcp", "-allocations", "2", "-size", "1200"}},
		{"tcp indications", []string{"-server", addrs[relay.TCP], "-transport", "tcp", "-allocations", "1", "-size", "99", "-indications"}},
		{"tls channel paced", []string{"-server", addrs[relay.TLS], "-transport", "tls", "-insecure", "-allocations", "2", "-size", "50", "-rate", "1k"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := runJSON(t, append(tc.args, "-pid", pid, "-label", "postern", "-scenario", tc.name)...)
			if r.Label != "postern" || r.Scenario != tc.name || r.Mode != "relay" {
				t.Errorf("label, scenario, mode = %q, %q, %q", r.Label, r.Scenario, r.Mode)
			}
			if r.ToPeer == 0 || r.ToClient == 0 || r.RelayedPPS <= 0 || r.Mbps <= 0 {
				t.Fatalf("nothing relayed: %+v", r)
			}
			// Every packet the peers got was echoed; the client side can
			// only lag by what is in flight.
			if r.ToClient > r.Sent+1000 || r.ToPeer > r.Sent+1000 {
				t.Errorf("received more than sent: %+v", r)
			}
			if r.RTTSamples == 0 || r.RTTp50 <= 0 || r.RTTp99 < r.RTTp50 || r.RTTp999 < r.RTTp99 {
				t.Errorf("RTT quantiles: %+v", r)
			}
			if r.ServerCPUSeconds <= 0 || r.ServerCPUPerMpkt <= 0 || r.ServerHWMKiB <= 0 {
				t.Errorf("server usage not measured: %+v", r)
			}
			if r.OfferedPPS > 0 {
				// Paced: about the offered rate, in both directions.
				if got := float64(r.Sent) / r.Seconds; got < 0.5*r.OfferedPPS || got > 1.5*r.OfferedPPS {
					t.Errorf("sent %.0f pkt/s at -rate %.0f", got, r.OfferedPPS)
				}
			}
		})
	}
}

func TestSetupIdlePing(t *testing.T) {
	addrs := startRelay(t)
	pid := strconv.Itoa(os.Getpid())
	r := runJSON(t, "-mode", "ping", "-server", addrs[relay.UDP], "-timeout", "2s")
	if r.Mode != "ping" {
		t.Errorf("ping: %+v", r)
	}
	r = runJSON(t, "-mode", "setup", "-server", addrs[relay.UDP], "-concurrency", "4", "-pid", pid)
	if r.AllocsPerSec <= 0 || r.Errors != 0 || r.Concurrency != 4 || r.RTTp50 <= 0 {
		t.Errorf("setup: %+v", r)
	}
	r = runJSON(t, "-mode", "idle", "-server", addrs[relay.UDP], "-allocations", "50", "-hold", "10ms", "-pid", pid)
	if r.Allocations != 50 || r.ServerRSSKiB <= 0 || r.BaselineRSSKiB <= 0 || r.AllocsPerSec <= 0 {
		t.Errorf("idle: %+v", r)
	}
}

func TestWrongPassword(t *testing.T) {
	addrs := startRelay(t)
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"-server", addrs[relay.UDP], "-user", testUser + ":wrong", "-duration", "100ms"}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "401") {
		t.Errorf("exit %d, stderr %q: want 1 and a 401", code, errb.String())
	}
}

func TestFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-mode", "nope", "-user", "a:b"},
		{"-transport", "sctp", "-user", "a:b"},
		{},                             // no -user
		{"-user", "a:b", "-size", "8"}, // below the payload header
		{"-user", "a:b", "-rate", "fast"},
		{"-user", "a:b", "-pid", "self"},
		{"-user", "a:b", "extra"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) succeeded", args)
		}
	}
	cfg, err := parseFlags([]string{"-user", "u:p:with:colons", "-rate", "20k", "-server", "127.0.0.1:1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.creds.password != "p:with:colons" || cfg.rate != 20000 {
		t.Errorf("creds %+v rate %v", cfg.creds, cfg.rate)
	}
	if got := cfg.source(0); got != netip.MustParseAddr("127.0.1.1") {
		t.Errorf("source(0) = %v", got)
	}
	if got := cfg.source(254); got != netip.MustParseAddr("127.0.1.1") {
		t.Errorf("source(254) = %v, want the cycle to wrap", got)
	}
	cfg.server = "[::1]:3478"
	based := &config{server: "10.0.0.1:3478", sources: 4, sourceBase: netip.MustParseAddr("10.9.1.1")}
	if got := based.source(5); got != netip.MustParseAddr("10.9.1.2") {
		t.Errorf("source(5) from 10.9.1.1 over 4 = %v, want 10.9.1.2", got)
	}
	if got := cfg.source(3); got.IsValid() {
		t.Errorf("source for an IPv6 server = %v, want the kernel's choice", got)
	}
}

func TestFrames(t *testing.T) {
	peer := netip.MustParseAddrPort("127.0.0.1:40000")
	f := &flow{idx: 7, channel: 0x4001, peerAddr: peer}
	for _, spec := range []frameSpec{
		{size: 100}, {size: 101, stream: true}, {size: 1200, indications: true}, {size: 17, indications: true, stream: true},
	} {
		b := make([]byte, spec.frameLen())
		spec.fill(b, f)
		spec.stamp(b, 42, 123456789)
		if spec.indications {
			// A valid Send indication to the peer with the payload as DATA.
			m := &stun.Message{Raw: append([]byte(nil), b...)}
			if err := m.Decode(); err != nil {
				t.Fatalf("%+v: decode: %v", spec, err)
			}
			if m.Type != stun.NewType(stun.MethodSend, stun.ClassIndication) {
				t.Errorf("%+v: type %v", spec, m.Type)
			}
			got, err := proto.GetXORAddress(m, stun.AttrXORPeerAddress)
			if err != nil || got != peer {
				t.Errorf("%+v: XOR-PEER-ADDRESS %v, %v", spec, got, err)
			}
			var data proto.Data
			if err := data.GetFrom(m); err != nil || len(data) != spec.size {
				t.Errorf("%+v: DATA %d bytes, %v", spec, len(data), err)
			}
		} else {
			n, p, err := proto.ParseChannelData(b)
			if err != nil || n != 0x4001 || len(p) != spec.size {
				t.Errorf("%+v: ChannelData %#x, %d bytes, %v", spec, n, len(p), err)
			}
			if spec.stream && len(b)%4 != 0 {
				t.Errorf("%+v: stream frame of %d bytes is not padded", spec, len(b))
			}
		}
		// What the server sends back is parsed the same way: ChannelData,
		// or a Data indication built by the relay's own encoder.
		payload := b[spec.payloadOff() : spec.payloadOff()+spec.size]
		var back []byte
		if spec.indications {
			buf := make([]byte, proto.DataIndicationHeadroom+len(payload)+3)
			copy(buf[proto.DataIndicationHeadroom:], payload)
			back = proto.PutDataIndication(buf, len(payload), peer, [12]byte{1})
		} else {
			back = proto.PutChannelData(append(make([]byte, 4), payload...), 0x4001, len(payload), spec.stream)
		}
		p, ok := clientPayload(back)
		if !ok || !bytes.Equal(p, payload) {
			t.Errorf("%+v: clientPayload = %d bytes, %v", spec, len(p), ok)
		}
		if sent, ok := payloadSent(p); !ok || sent != 123456789 {
			t.Errorf("%+v: payloadSent = %d, %v", spec, sent, ok)
		}
	}
	for _, bad := range [][]byte{nil, {0x40, 0x00, 0x00, 0x09, 1}, {0x00, 0x17, 0x00, 0x08}, make([]byte, 24)} {
		if _, ok := clientPayload(bad); ok {
			t.Errorf("clientPayload(%x) accepted", bad)
		}
	}
}

func TestHistogram(t *testing.T) {
	h := newHistogram()
	if h.quantile(0.5) != 0 {
		t.Error("empty histogram has a median")
	}
	for i := 1; i <= 1000; i++ {
		h.add(int64(i) * int64(time.Microsecond))
	}
	h.add(int64(time.Second)) // overflow bucket
	h.add(-5)                 // clock step: counted as 0
	o := newHistogram()
	o.add(int64(500 * time.Microsecond))
	h.merge(o)
	if h.count != 1003 {
		t.Errorf("count %d", h.count)
	}
	for _, c := range []struct{ q, lo, hi float64 }{{0.5, 499, 502}, {0.99, 990, 993}, {1, 100000, 100001}} {
		if got := h.quantile(c.q); got < c.lo || got > c.hi {
			t.Errorf("quantile(%v) = %v, want %v..%v", c.q, got, c.lo, c.hi)
		}
	}
}

func TestProcParsing(t *testing.T) {
	stat := []byte("1234 (turn server (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 1000 200 18446744073709551615\n")
	cpu, err := parseStatCPU(stat, 100)
	if err != nil || cpu != 3.0 {
		t.Errorf("parseStatCPU = %v, %v; want 3 s", cpu, err)
	}
	if _, err := parseStatCPU([]byte("1234 (x"), 100); err == nil {
		t.Error("truncated stat accepted")
	}
	if busy, err := parseMachineCPU([]byte("cpu  100 10 50 1000 7 3 2 5 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"), 100, -1); err != nil || busy != 1.70 {
		t.Errorf("parseMachineCPU = %v, %v; want 1.70 s (user+nice+system+irq+softirq+steal)", busy, err)
	}
	if busy, err := parseMachineCPU([]byte("cpu  100 10 50 1000 7 3 2 5 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"), 100, 0); err != nil || busy != 0.27 {
		t.Errorf("parseMachineCPU of cpu0 = %v, %v; want 0.27 s", busy, err)
	}
	if _, err := parseMachineCPU([]byte("cpu  100 10 50 1000 7 3 2 5 0 0\n"), 100, 1); err == nil {
		t.Error("a missing cpu1 line accepted")
	}
	if _, err := parseMachineCPU([]byte("intr 1 2 3\n"), 100, -1); err == nil {
		t.Error("a /proc/stat without its cpu line accepted")
	}
	status := []byte("Name:\tpostern\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t5\n")
	if rss, hwm := parseStatusMem(status); rss != 10240 || hwm != 20480 {
		t.Errorf("parseStatusMem = %d, %d", rss, hwm)
	}
	u, err := readProc("self", clockTicks())
	if err != nil || u.rssKiB <= 0 || u.hwmKiB < u.rssKiB {
		t.Errorf("readProc(self) = %+v, %v", u, err)
	}
	if _, err := readProc("999999999", 100); err == nil {
		t.Error("readProc of no process succeeded")
	}
	if clockTicks() <= 0 {
		t.Error("clockTicks")
	}
}

func TestTable(t *testing.T) {
	rs := []result{
		{Label: "postern", Scenario: "u", Mode: "relay", Transport: "udp", Allocations: 1, Size: 100, RelayedPPS: 200e3, ServerCPUPerMpkt: 4, ServerUtil: 0.99},
		{Label: "postern", Scenario: "u", Mode: "relay", Transport: "udp", Allocations: 1, Size: 100, RelayedPPS: 220e3, ServerCPUPerMpkt: 4, ServerUtil: 0.97},
		{Label: "coturn", Scenario: "u", Mode: "relay", Transport: "udp", Allocations: 1, Size: 100, RelayedPPS: 100e3, ServerCPUPerMpkt: 8, ServerUtil: 1},
		{Label: "postern", Scenario: "m", Mode: "relay", Transport: "udp", Allocations: 1000, Size: 1200, OfferedPPS: 50e3, RTTp50: 80, RTTp99: 900, RTTp999: 3000, ServerCPUPerMpkt: 4, ServerUtil: 0.4},
		{Label: "coturn", Scenario: "m", Mode: "relay", Transport: "udp", Allocations: 1000, Size: 1200, OfferedPPS: 50e3, RTTp50: 90, RTTp99: 1000, RTTp999: 4000, ServerCPUPerMpkt: 8, ServerUtil: 0.8, Loss: 0.00125},
		{Label: "postern", Scenario: "i", Mode: "idle", Allocations: 10000, ServerRSSKiB: 40 << 10, RSSPerAllocB: 3000},
		{Label: "coturn", Scenario: "i", Mode: "idle", Allocations: 10000, ServerRSSKiB: 80 << 10, RSSPerAllocB: 6000},
	}
	dir := t.TempDir()
	name := filepath.Join(dir, "r.jsonl")
	var buf bytes.Buffer
	for _, r := range rs {
		b, _ := json.Marshal(r)
		buf.Write(append(b, '\n'))
	}
	if err := os.WriteFile(name, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if code := run(context.Background(), []string{"table", name}, &out, io.Discard); code != 0 {
		t.Fatalf("table: exit %d", code)
	}
	got := out.String()
	for _, want := range []string{
		"| UDP ChannelData 100 B, 1 alloc, flat out | relayed pkt/s (higher is better) | 210 k ±5% | 100 k | **2.10** |",
		"relayed pkt per server CPU-second (higher is better) | 250 k ±0% | 125 k | **2.00** |",
		"| | server CPU busy | 98% | 100% | |",
		"| UDP ChannelData 1200 B, 1000 alloc, 50.0 k pkt/s | RTT p50 (µs) (lower is better) | 80 | 90 | **0.89** |",
		"| RTT p99.9 (µs) (lower is better) | 3000 | 4000 | **0.75** |",
		"| server CPU-s per million relayed pkt (lower is better) | 4.00 | 8.00 | **0.50** |",
		"| round-trip loss (%) (lower is better) | 0 | 0.125 | – |",
		"| 10000 idle UDP allocations | server RSS (MiB) (lower is better) | 40.0 | 80.0 | **0.50** |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
	if code := run(context.Background(), []string{"table", filepath.Join(dir, "missing")}, io.Discard, io.Discard); code == 0 {
		t.Error("table of a missing file succeeded")
	}
}

func TestSelfSigned(t *testing.T) {
	dir := t.TempDir()
	if code := run(context.Background(), []string{"selfsigned", dir}, io.Discard, io.Discard); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, f := range []string{"cert.pem", "key.pem"} {
		if b, err := os.ReadFile(filepath.Join(dir, f)); err != nil || !bytes.Contains(b, []byte("-----BEGIN")) {
			t.Errorf("%s: %v", f, err)
		}
	}
}
