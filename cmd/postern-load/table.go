package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
)

// runTable is `postern-load table`: it reads JSON results (one object per
// line, as -json prints them) of two servers and prints one Markdown table
// with both and their ratio per scenario and metric. Repeated runs of a
// scenario are summarised by their median, with the spread (half the range,
// relative to the median) beside it.
func runTable(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("postern-load table", flag.ContinueOnError)
	fs.SetOutput(stderr)
	a := fs.String("a", "postern", "label of the first server (the ratio's numerator)")
	b := fs.String("b", "coturn", "label of the second server")
	aName := fs.String("a-name", "Postern", "column title of the first server")
	bName := fs.String("b-name", "coturn", "column title of the second server")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var results []result
	for _, name := range fs.Args() {
		rs, err := readResults(name)
		if err != nil {
			fmt.Fprintln(stderr, "postern-load: table:", err)
			return 1
		}
		results = append(results, rs...)
	}
	if len(results) == 0 {
		fmt.Fprintln(stderr, "postern-load: table: no results (give the JSON lines files written with -json)")
		return 2
	}
	writeTable(stdout, results, *a, *b, *aName, *bName)
	return 0
}

func readResults(name string) ([]result, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rs []result
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var r result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		rs = append(rs, r)
	}
	return rs, sc.Err()
}

// metric is one row of the table.
type metric struct {
	name   string
	unit   func(float64) string
	value  func(*result) float64
	higher bool // higher is better
	zeroOK bool // 0 is a measured value (loss), not a missing one
}

func metricsFor(r *result) []metric {
	pktPerCPU := metric{"relayed pkt per server CPU-second", si, func(r *result) float64 {
		if r.ServerCPUPerMpkt <= 0 {
			return math.NaN()
		}
		return 1e6 / r.ServerCPUPerMpkt
	}, true, false}
	switch r.Mode {
	case "relay":
		if r.OfferedPPS > 0 {
			ms := []metric{
				{"RTT p50 (µs)", plain, func(r *result) float64 { return r.RTTp50 }, false, false},
				{"RTT p99 (µs)", plain, func(r *result) float64 { return r.RTTp99 }, false, false},
				{"RTT p99.9 (µs)", plain, func(r *result) float64 { return r.RTTp999 }, false, false},
				pktPerCPU,
				// The figure a fleet at media rates is sized by, as the issue states it.
				{"server CPU-s per million relayed pkt", trimFloat, func(r *result) float64 {
					if r.ServerCPUPerMpkt <= 0 {
						return math.NaN()
					}
					return r.ServerCPUPerMpkt
				}, false, false},
				{"round-trip loss (%)", lossPct, func(r *result) float64 { return 100 * r.Loss }, false, true},
			}
			if r.ServerCPUBusyPerMpkt > 0 {
				// NETNS=1 (-server-cpu): the server's CPU with the kernel's work for it.
				ms = append(ms, metric{"server's CPU busy, CPU-s per million relayed pkt", trimFloat, func(r *result) float64 {
					if r.ServerCPUBusyPerMpkt <= 0 {
						return math.NaN()
					}
					return r.ServerCPUBusyPerMpkt
				}, false, false})
			}
			return ms
		}
		return []metric{
			{"relayed pkt/s", si, func(r *result) float64 { return r.RelayedPPS }, true, false},
			pktPerCPU,
		}
	case "setup":
		return []metric{
			{"Allocate/s", si, func(r *result) float64 { return r.AllocsPerSec }, true, false},
			{"Allocate p99 latency (µs)", plain, func(r *result) float64 { return r.RTTp99 }, false, false},
		}
	case "idle":
		return []metric{
			{"server RSS (MiB)", mib, func(r *result) float64 { return float64(r.ServerRSSKiB) }, false, false},
			{"RSS growth per allocation (bytes)", plain, func(r *result) float64 { return r.RSSPerAllocB }, false, false},
		}
	}
	return nil
}

// describe names a scenario from its parameters.
func describe(r *result) string {
	switch r.Mode {
	case "setup":
		return fmt.Sprintf("allocation setup, UDP, %d concurrent clients", r.Concurrency)
	case "idle":
		return fmt.Sprintf("%d idle UDP allocations", r.Allocations)
	}
	kind := "ChannelData"
	if r.Indications {
		kind = "Send/Data ind."
	}
	rate := "flat out"
	if r.OfferedPPS > 0 {
		rate = si(r.OfferedPPS) + " pkt/s"
	}
	return fmt.Sprintf("%s %s %d B, %d alloc, %s", strings.ToUpper(r.Transport), kind, r.Size, r.Allocations, rate)
}

func writeTable(w io.Writer, results []result, a, b, aName, bName string) {
	// Group by scenario (its name, else its description), in order.
	var order []string
	groups := map[string][]*result{}
	for i := range results {
		r := &results[i]
		key := r.Scenario
		if key == "" {
			key = describe(r)
		}
		if _, ok := groups[key]; !ok {
			order = append(order, key)
		}
		groups[key] = append(groups[key], r)
	}
	fmt.Fprintf(w, "| scenario | metric | %s | %s | %s / %s |\n", aName, bName, aName, bName)
	fmt.Fprintln(w, "|---|---|---:|---:|---:|")
	for _, key := range order {
		rs := groups[key]
		var as, bs []*result
		for _, r := range rs {
			switch r.Label {
			case a:
				as = append(as, r)
			case b:
				bs = append(bs, r)
			}
		}
		first := rs[0]
		title := describe(first)
		for _, m := range metricsFor(first) {
			av, aSpread := summarizeOpt(as, m.value, m.zeroOK)
			bv, bSpread := summarizeOpt(bs, m.value, m.zeroOK)
			ratio := "–"
			if av > 0 && bv > 0 {
				ratio = fmt.Sprintf("%.2f", av/bv)
				better := av > bv
				if !m.higher {
					better = av < bv
				}
				if better {
					ratio = "**" + ratio + "**"
				}
			}
			dir := "higher is better"
			if !m.higher {
				dir = "lower is better"
			}
			fmt.Fprintf(w, "| %s | %s (%s) | %s | %s | %s |\n", title, m.name, dir,
				cellOpt(av, aSpread, len(as), m.unit, m.zeroOK && len(as) > 0), cellOpt(bv, bSpread, len(bs), m.unit, m.zeroOK && len(bs) > 0), ratio)
			title = ""
		}
		// Server CPU use, to tell a saturated server from a slow generator.
		if first.Mode == "relay" || first.Mode == "setup" {
			au, _ := summarize(as, func(r *result) float64 { return r.ServerUtil })
			bu, _ := summarize(bs, func(r *result) float64 { return r.ServerUtil })
			if au > 0 || bu > 0 {
				fmt.Fprintf(w, "| | server CPU busy | %s | %s | |\n", pct(au), pct(bu))
			}
		}
	}
}

// summarize returns the median of value over rs and the spread: half the
// range relative to the median. NaN values are skipped.
func summarize(rs []*result, value func(*result) float64) (median, spread float64) {
	return summarizeOpt(rs, value, false)
}

// summarizeOpt is summarize that keeps zero values when zeroOK.
func summarizeOpt(rs []*result, value func(*result) float64, zeroOK bool) (median, spread float64) {
	var vs []float64
	for _, r := range rs {
		if v := value(r); !math.IsNaN(v) && (v > 0 || zeroOK && v == 0) {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return 0, 0
	}
	slices.Sort(vs)
	n := len(vs)
	median = vs[n/2]
	if n%2 == 0 {
		median = (vs[n/2-1] + vs[n/2]) / 2
	}
	if median > 0 {
		spread = (vs[n-1] - vs[0]) / 2 / median
	}
	return median, spread
}

func cell(v, spread float64, n int, unit func(float64) string) string {
	return cellOpt(v, spread, n, unit, false)
}

// cellOpt is cell that prints a zero value when zeroOK.
func cellOpt(v, spread float64, n int, unit func(float64) string, zeroOK bool) string {
	if v == 0 && zeroOK {
		return unit(0)
	}
	if v == 0 {
		return "–"
	}
	s := unit(v)
	if n > 1 {
		s += fmt.Sprintf(" ±%.0f%%", 100*spread)
	}
	return s
}

// si formats with k and M suffixes, three significant digits.
func si(v float64) string {
	switch {
	case v >= 1e6:
		return trimFloat(v/1e6) + " M"
	case v >= 1e3:
		return trimFloat(v/1e3) + " k"
	}
	return trimFloat(v)
}

func trimFloat(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// lossPct formats a loss percentage: 0 exactly, else three decimals.
func lossPct(v float64) string {
	if v == 0 {
		return "0"
	}
	return fmt.Sprintf("%.3f", v)
}

func plain(v float64) string { return fmt.Sprintf("%.0f", v) }

func mib(kib float64) string { return fmt.Sprintf("%.1f", kib/1024) }

func pct(v float64) string {
	if v <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f%%", 100*v)
}
