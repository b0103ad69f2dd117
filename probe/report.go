package probe

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/postern/postern/iceapi"
)

// What Result.Relay says.
const (
	RelayYes      = "yes"      // a packet went through the relay and came back
	RelayNo       = "no"       // reachable, but allocating or relaying failed
	RelayUntested = "untested" // reachable; no credentials to try relaying with
)

// The words a report uses, shared by everything that shows a probe's
// results, so that each outcome is always described the same way.
const (
	WordYes = "yes"
	WordNo  = "no"
	// WordNone stands in an empty cell of the table (no RTT, relay not tried).
	WordNone = "-"
	// WordSkippedByProxy is the error of a UDP door behind an HTTP proxy.
	WordSkippedByProxy = "skipped: UDP cannot pass an HTTP proxy"
	// WordTimedOut replaces the error of a step that ran out of time.
	WordTimedOut = "no answer (timed out)"
	// WordNeverCameBack is why a relay round trip failed when the relay
	// accepted the packet but never delivered it.
	WordNeverCameBack = "the packet never came back (the server may refuse to relay to its own address: check its peer policy)"
	// WordCertRefused prefixes Result.CertError.
	WordCertRefused = "certificate refused, browsers will not use it: "
	// WordRelayedVia prefixes the relayed address of a door that worked.
	WordRelayedVia = "relayed via "
	// WordNothingWorks ends a report with no usable door.
	WordNothingWorks = "Nothing works from here: no iceServers to suggest."
	// WordWorks heads the iceServers of a report that tested relaying.
	WordWorks = "iceServers that work from here:"
	// WordAnswered heads the iceServers of a report without credentials.
	WordAnswered = "iceServers that answered from here (relaying not tested: no credentials):"
)

// ErrNoRelayPath is Report.Err when no door relayed: the user cannot count
// on this server from where they are.
var ErrNoRelayPath = errors.New("no relay path works from here")

// Result is what one door showed.
type Result struct {
	Transport string  `json:"transport"`
	Port      int     `json:"port"`
	URL       string  `json:"url"`
	Reachable bool    `json:"reachable"`
	RTTMillis float64 `json:"rtt_ms,omitempty"`
	// Relay is RelayYes, RelayNo, RelayUntested or "" (not reachable).
	Relay   string `json:"relay,omitempty"`
	Mapped  string `json:"mapped_address,omitempty"`
	Relayed string `json:"relayed_address,omitempty"`
	// CertError says why a browser would refuse the TLS certificate.
	CertError string `json:"certificate_error,omitempty"`
	Error     string `json:"error,omitempty"`
}

// Works reports whether a client may use the door: it relayed or, when
// relaying was not tested, answered.
func (r Result) Works() bool { return r.Relay == RelayYes || r.Relay == RelayUntested }

// ReachableWord is "yes" or "no".
func (r Result) ReachableWord() string {
	if r.Reachable {
		return WordYes
	}
	return WordNo
}

// RTTWord is the round-trip time of the STUN Binding, "0.3 ms", or "-".
func (r Result) RTTWord() string {
	if !r.Reachable {
		return WordNone
	}
	return strconv.FormatFloat(r.RTTMillis, 'f', 1, 64) + " ms"
}

// RelayWord is Relay, or "-" when relaying was not reached.
func (r Result) RelayWord() string {
	if r.Relay == "" {
		return WordNone
	}
	return r.Relay
}

// Detail says what went wrong, or where the relay was: the certificate
// problem if any, then the error or the relayed address.
func (r Result) Detail() string {
	var details []string
	if r.CertError != "" {
		details = append(details, WordCertRefused+r.CertError)
	}
	if r.Error != "" {
		details = append(details, r.Error)
	} else if r.Relayed != "" {
		details = append(details, WordRelayedVia+r.Relayed)
	}
	return strings.Join(details, "; ")
}

// Report is what a probe found: the --json output of `postern probe`.
type Report struct {
	Host string `json:"host"`
	// Proxy is the HTTP proxy used, its password redacted.
	Proxy      string               `json:"proxy,omitempty"`
	Results    []Result             `json:"results"`
	ICEServers iceapi.Configuration `json:"ice_servers"`
}

// Relays reports whether at least one door relayed.
func (rep Report) Relays() bool {
	for _, r := range rep.Results {
		if r.Relay == RelayYes {
			return true
		}
	}
	return false
}

// Tested reports whether relaying was tried (credentials were given).
func (rep Report) Tested() bool {
	for _, r := range rep.Results {
		if r.Relay == RelayUntested {
			return false
		}
	}
	return true
}

// Err is nil when at least one door relayed, else ErrNoRelayPath.
func (rep Report) Err() error {
	if rep.Relays() {
		return nil
	}
	return ErrNoRelayPath
}

// Verdict is the line that introduces the suggested iceServers, or says
// there are none.
func (rep Report) Verdict() string {
	switch {
	case len(rep.ICEServers.ICEServers) == 0:
		return WordNothingWorks
	case !rep.Tested():
		return WordAnswered
	}
	return WordWorks
}

// WriteJSON writes rep as indented JSON.
func (rep Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return fmt.Errorf("probe report: %w", err)
	}
	return nil
}

// WriteTable writes the human-readable report: a row per door, then the
// verdict and the iceServers JSON that works from here.
func (rep Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "Probing %s", rep.Host)
	if rep.Proxy != "" {
		fmt.Fprintf(w, " through the HTTP proxy %s", rep.Proxy)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TRANSPORT\tPORT\tREACHABLE\tRTT\tRELAY\tDETAIL")
	for _, r := range rep.Results {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", r.Transport, r.Port, r.ReachableWord(), r.RTTWord(), r.RelayWord(), r.Detail())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if _, err := fmt.Fprintln(w, rep.Verdict()); err != nil || len(rep.ICEServers.ICEServers) == 0 {
		return err
	}
	b, err := json.Marshal(rep.ICEServers)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
