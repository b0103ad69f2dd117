package interop

import (
	"context"
	"net"
	"regexp"
	"strconv"
	"testing"
	"time"
)

var reReflexive = regexp.MustCompile(`UDP reflexive addr: (\S+)`)

// runStunCases checks a STUN Binding on every listener: with coturn's turnutils_stunclient on the UDP ones (it
// speaks UDP only), and with a Go client (pion/stun) over TCP and TLS, where it also checks the reflexive
// address is the client's own.
func runStunCases(t *testing.T, rep *report, tg *target) {
	for _, s := range tg.servers {
		prefix := ""
		if len(tg.servers) > 1 {
			prefix = s.name + "-"
		}
		udpPorts := []struct {
			role string
			port int
		}{{"rfc", s.ports.plain}, {"shared", s.ports.shared}}
		for _, p := range udpPorts {
			rep.runCase(t, prefix+"stunclient-udp-"+p.role, false, func(t *testing.T, info *caseInfo) {
				info.transport, info.port = "udp", p.port
				bin, skip := findTool(toolStun)
				if skip != "" {
					info.note = skip
					skipOrFail(t, skip)
				}
				// turnutils_stunclient retries forever against a silent server, hence the timeout.
				out, err := run(context.Background(), 5*time.Second, bin, "-p", strconv.Itoa(p.port), "127.0.0.1")
				m := reReflexive.FindStringSubmatch(out)
				if m != nil {
					info.pair = "mapped " + m[1]
				}
				if err != nil || m == nil {
					why := "no reflexive address in output"
					if err != nil {
						why = err.Error()
					}
					info.fail(t, why, "turnutils_stunclient -p %d 127.0.0.1:\n%s\n%s", p.port, indent(tailLines(out, 20), "    "), tg.logTail(30))
				}
			})
		}
		streams := []struct {
			name, network string
			port          int
		}{
			{"tcp-rfc", "tcp", s.ports.plain},
			{"tls-rfc", "tls", s.ports.tls},
			{"tcp-shared", "tcp", s.ports.shared},
			{"tls-shared", "tls", s.ports.shared},
		}
		for _, c := range streams {
			rep.runCase(t, prefix+"binding-"+c.name, false, func(t *testing.T, info *caseInfo) {
				info.transport, info.port = c.network, c.port
				mapped, err := stunBinding(c.network, net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)), tg.cert, 5*time.Second)
				if mapped != "" {
					info.pair = "mapped " + mapped
				}
				if err != nil {
					info.fail(t, err.Error(), "STUN Binding over %s to port %d\n%s", c.network, c.port, tg.logTail(30))
				}
			})
		}
	}
}
