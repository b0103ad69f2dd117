package relay

import (
	"strconv"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/pion/stun/v4"
	"golang.org/x/time/rate"

	"github.com/postern/postern/allocations"
	"github.com/postern/postern/auth"
)

// Request-side helpers of the answer limits (ratelimit.go) and of the
// authentication-failure log line.

// allowAnswer reports whether the answer of kind k to this request may be
// sent, spending the client's budget, and counts the drop when not. Only
// UDP answers are limited: over TCP and TLS the source address is proven
// by the handshake (no reflection), and the client never retransmits
// (RFC 8489 §6.2.2: "Reliability of STUN over TCP and TLS-over-TCP is
// handled by TCP itself, and there are no retransmissions at the STUN
// protocol level"), so a dropped answer would hang it.
func (r *request) allowAnswer(k answerKind) bool {
	if r.ft.Transport != allocations.UDP || r.s.answerLimit.allow(r.ft.Client.Addr(), k) {
		return true
	}
	r.s.stats.drop(DropRateLimited)
	return false
}

// staleNonce answers 438 to a request whose NONCE CheckNonce rejected with
// err (RFC 8489 §9.2.4: "If the NONCE is no longer valid, the server MUST
// generate an error response with an error code of 438 (Stale Nonce)").
// When the nonce is one this server issued to this address and the
// request's MESSAGE-INTEGRITY verifies, the client has proven who it is:
// its 438 does not spend the unauthenticated budget. An allocation's
// Refresh that meets an aged nonce must get its 438, or the client cannot
// refresh and its call dies, however busy its NAT address is.
func (r *request) staleNonce(err error) {
	r.s.stats.staleNonces.Add(1)
	if auth.NonceGenuine(err) {
		if _, verr := r.s.auth().Verify(r.req); verr == nil {
			r.proven = true
		}
	}
	r.challenge(stun.CodeStaleNonce, "Stale Nonce")
}

// Bounds of the "authentication failed" log line: every failed
// MESSAGE-INTEGRITY would otherwise write a line sized by the attacker
// (a USERNAME may be 513 bytes) at whatever rate the attacker sends.
const (
	authLogRate  = 1   // lines per second, after the burst
	authLogBurst = 10  // lines at once
	logNameMax   = 64  // bytes of a USERNAME kept in a log line
	logErrMax    = 200 // bytes of an error text kept in a log line
)

// lineLimiter rate-limits one kind of log line and counts what it
// suppressed, which the next line it lets through reports.
type lineLimiter struct {
	lim        *rate.Limiter
	suppressed atomic.Uint64
}

func newLineLimiter(perSecond float64, burst int) *lineLimiter {
	return &lineLimiter{lim: rate.NewLimiter(rate.Limit(perSecond), burst)}
}

// allow reports whether a line may be written now and, if so, how many
// were suppressed since the last one written.
func (l *lineLimiter) allow() (suppressed uint64, ok bool) {
	if !l.lim.Allow() {
		l.suppressed.Add(1)
		return 0, false
	}
	return l.suppressed.Swap(0), true
}

// logAuthFailure writes the "authentication failed" line for err, from
// auth.Verify: rate-limited, with the USERNAME cut to logNameMax bytes and
// the error text to logErrMax.
func (r *request) logAuthFailure(err error) {
	suppressed, ok := r.s.authLog.allow()
	if !ok {
		return
	}
	var name string
	if raw, e := r.req.Get(stun.AttrUsername); e == nil {
		name = string(raw)
	}
	msg := err.Error()
	if name != "" {
		// auth quotes the name into its errors: keep it once, cut.
		msg = strings.ReplaceAll(msg, strconv.Quote(name), strconv.Quote(cutText(name, logNameMax)))
	}
	attrs := []any{"client", r.ft.Client.String(), "transport", r.ft.Transport.String(),
		"user", cutText(name, logNameMax), "err", cutText(msg, logErrMax)}
	if suppressed > 0 {
		attrs = append(attrs, "suppressed", suppressed)
	}
	r.s.log.Info("authentication failed", attrs...)
}

// cutText returns s cut to at most n bytes at a rune boundary, marked with
// "…" and the full length when cut. The logger quotes what it must.
func cutText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}
