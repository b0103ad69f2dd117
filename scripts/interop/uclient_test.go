package interop

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/turntest"
)

// uclientMessages is how many messages each turnutils_uclient run sends through the relay (and expects back from
// turnutils_peer, which echoes them).
const uclientMessages = 100

// uclientCase is one turnutils_uclient run.
type uclientCase struct {
	transport string // udp, tcp, tls
	shared    bool   // the shared (443 role) port rather than the RFC-style one
	rest      bool   // REST-API credentials (-W secret) rather than a long-term user
}

func (c uclientCase) name() string {
	role, cred := "rfc", "lt"
	if c.shared {
		role = "shared"
	}
	if c.rest {
		cred = "rest"
	}
	// "-send": every run relays with Send/Data indications (see uclientCases).
	return c.transport + "-" + role + "-" + cred + "-send"
}

// uclientCases relay through Send and Data indications (uclient -s). uclient's channel mode picks channel numbers
// at random from RFC 5766's 0x4000-0x7FFF, but RFC 8656 §12 narrowed the range to 0x4000-0x4FFF (0x5000-0x7FFF
// are reserved against DTLS-SRTP collisions, RFC 7983) and postern answers 400 outside it, as RFC 8656 asks: a
// channel-mode run would pass or fail by the luck of its random draw. ChannelData is covered by Chromium (which
// numbers its channels from 0x4000) and by the pion client tests in relay/.
func uclientCases() []uclientCase {
	var cs []uclientCase
	for _, transport := range []string{"udp", "tcp", "tls"} {
		for _, shared := range []bool{false, true} {
			for _, rest := range []bool{false, true} {
				cs = append(cs, uclientCase{transport: transport, shared: shared, rest: rest})
			}
		}
	}
	return cs
}

// port is the server port the case dials.
func (c uclientCase) port(p ports) int {
	switch {
	case c.shared:
		return p.shared
	case c.transport == "tls":
		return p.tls
	default:
		return p.plain
	}
}

// args builds the turnutils_uclient command line (coturn 4.6: see `turnutils_uclient` without arguments).
func (c uclientCase) args(port, peerPort int, caFile string) []string {
	// -v prints the relayed addresses; -c skips the RTCP companion allocation (EVEN-PORT + RESERVATION-TOKEN,
	// not part of this suite); -l message length; -z 5 ms between messages (default 20); -e/-r the peer
	// (turnutils_peer, which echoes); -p the server port.
	args := []string{
		"-v", "-c",
		"-n", strconv.Itoa(uclientMessages),
		"-l", "200",
		"-z", "5",
		"-e", uclientPeerIP, "-r", strconv.Itoa(peerPort),
		"-p", strconv.Itoa(port),
	}
	switch c.transport {
	case "tcp":
		args = append(args, "-t")
	case "tls":
		// -S alone would be DTLS; -t -S is TLS. -E makes uclient verify the server certificate against our CA.
		args = append(args, "-t", "-S", "-E", caFile)
	}
	args = append(args, "-s") // Send/Data indications: see uclientCases
	if c.rest {
		// -W: uclient mints the REST username (expiry:user) and password (HMAC-SHA1 of it) itself.
		args = append(args, "-u", restUser, "-W", restSecret)
	} else {
		args = append(args, "-u", ltUser, "-w", ltPassword)
	}
	return append(args, "127.0.0.1")
}

// uclientResult is what the suite reads from turnutils_uclient's output.
type uclientResult struct {
	sent, received       int      // final tot_send_msgs / tot_recv_msgs
	lost, dropped        int      // "Total lost packets N", "total send dropped N"
	haveTotals, haveLoss bool     // the totals line and the loss line were found
	relays               []string // "Received relay addr: ..."
	locals               []string // "Connected from: ...": the client's own addresses
	errors               []string // lines mentioning an error, without uclient's "N: : " prefix
}

var (
	reTotals = regexp.MustCompile(`start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$`)
	reLost   = regexp.MustCompile(`Total lost packets (\d+) \([\d.]+%\), total send dropped (\d+)`)
	reRelay  = regexp.MustCompile(`Received relay addr: (\S+)`)
	reLocal  = regexp.MustCompile(`Connected from: (\S+)`)
	reError  = regexp.MustCompile(`(?i)\berror\b`)
)

// parseUclient reads the totals and loss lines of a turnutils_uclient run. uclient prints its progress
// ("start_mclient: msz=1, tot_send_msgs=0, ...") every second and the final totals without "msz=", so the last
// totals line wins.
func parseUclient(out string) uclientResult {
	var r uclientResult
	scanLines(out, func(line string) {
		if m := reTotals.FindStringSubmatch(line); m != nil {
			r.sent, _ = strconv.Atoi(m[1])
			r.received, _ = strconv.Atoi(m[2])
			r.haveTotals = true
		}
		if m := reLost.FindStringSubmatch(line); m != nil {
			r.lost, _ = strconv.Atoi(m[1])
			r.dropped, _ = strconv.Atoi(m[2])
			r.haveLoss = true
		}
		if m := reRelay.FindStringSubmatch(line); m != nil && !slices.Contains(r.relays, m[1]) {
			r.relays = append(r.relays, m[1])
		}
		if m := reLocal.FindStringSubmatch(line); m != nil && !slices.Contains(r.locals, m[1]) {
			r.locals = append(r.locals, m[1])
		}
		if reError.MatchString(line) {
			r.errors = append(r.errors, strings.TrimSpace(strings.TrimLeft(line, "0123456789: ")))
		}
	})
	return r
}

// check returns why the run does not count as relaying every message with 0 % loss, or "" if it does.
func (r uclientResult) check(want int) string {
	switch {
	case (!r.haveTotals || !r.haveLoss) && len(r.errors) > 0:
		// The last error is the one that stopped the run (earlier ones are often retried TLS handshakes).
		return "no totals in uclient output; last error: " + r.errors[len(r.errors)-1]
	case !r.haveTotals || !r.haveLoss:
		return "no totals in uclient output"
	case len(r.relays) == 0:
		return "no relayed address received"
	case r.sent != want:
		return fmt.Sprintf("sent %d messages, want %d", r.sent, want)
	case r.received != r.sent:
		return fmt.Sprintf("received %d of %d messages", r.received, r.sent)
	case r.lost != 0 || r.dropped != 0:
		return fmt.Sprintf("lost %d, send dropped %d", r.lost, r.dropped)
	}
	return ""
}

// uclientPeerIP is where turnutils_peer listens: not on 127.0.0.1, the
// server's own address, where Postern relays only to relay ports (its
// listeners and other UDP services of the host are not peers).
const uclientPeerIP = "127.0.0.2"

func runUclientCases(t *testing.T, rep *report, tg *target, dir string) {
	// A missing tool skips each case on its own line, so the summary counts them.
	uclient, skip := findTool(toolCoturn)
	peerBin, skipPeer := findTool(toolPeer)
	if skip == "" {
		skip = skipPeer
	}
	peerPort := 0
	if skip == "" {
		peerPort = turntest.FreePort(t)
		peer := startProc(t, dir, "turnutils_peer", exec.Command(peerBin, "-L", uclientPeerIP, "-p", strconv.Itoa(peerPort)))
		time.Sleep(200 * time.Millisecond) // the peer binds at once; give it a moment before clients aim at it
		if done, err := peer.exited(); done {
			t.Fatalf("turnutils_peer exited at start: %v\n%s", err, peer.tail(20))
		}
	}
	for _, c := range uclientCases() {
		rep.runCase(t, c.name(), true, func(t *testing.T, info *caseInfo) {
			srv := tg.server(c.rest)
			port := c.port(srv.ports)
			info.transport, info.port = c.transport, port
			if skip != "" {
				info.note = skip
				skipOrFail(t, skip)
			}
			out, err := run(context.Background(), 30*time.Second, uclient, c.args(port, peerPort, tg.cert.certPath)...)
			res := parseUclient(out)
			if len(res.relays) > 0 {
				info.pair = strings.Join(res.relays, ",") + " -> peer " + uclientPeerIP + ":" + strconv.Itoa(peerPort)
			}
			why := res.check(uclientMessages)
			if err != nil && why == "" {
				why = err.Error()
			} else if err != nil {
				why += " (" + err.Error() + ")"
			}
			if why != "" {
				info.fail(t, why, "turnutils_uclient %s\nuclient output (tail):\n%s\n%s",
					strings.Join(c.args(port, peerPort, tg.cert.certPath), " "), indent(tailLines(out, 30), "    "), tg.logExcerpt(append(res.locals, res.relays...), 40))
			}
		})
	}
}
