// Package selftest serves the self-test page: a connectivity test that runs
// in a visitor's own browser. The page tries every door of probe.Doors with
// short-lived credentials from a test-only minting endpoint and shows which
// work, how fast, and a verdict in probe's words. The door list and the
// words are written into the page from Go, so the page and `postern probe`
// cannot drift apart.
//
// Minting is off unless Config.Enabled: with it off the page still loads
// (and says the test is not enabled) and CredentialsPath answers 404.
package selftest

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/probe"
)

// Paths the handler answers.
const (
	// PagePath is where the credentials API listener serves the page.
	PagePath = "/test"
	// CredentialsPath is the minting endpoint (POST).
	CredentialsPath = "/test/credentials"
	// User is the user part of the minted REST usernames (EXPIRY:USER), so
	// that the server log tells self-test allocations apart.
	User = "postern-selftest"
)

// Defaults and bounds.
const (
	// DefaultTTL is long enough for one run of the page (under a minute)
	// with a margin, short enough that a leaked credential is soon useless.
	DefaultTTL = 5 * time.Minute
	// MaxTTL bounds Config.TTL: these credentials are handed to anyone.
	MaxTTL = time.Hour
	// DefaultRate is one credential per source address per 10 s, with
	// DefaultBurst: a person re-running the test a few times is served, a
	// script harvesting credentials is not.
	DefaultRate  = rate.Limit(0.1)
	DefaultBurst = 3
	// maxSources bounds the rate limiter's table of source addresses.
	maxSources = 10000
	// sourceIdle is when an idle source's entry may be dropped: by then its
	// bucket is full again at any rate >= DefaultRate.
	sourceIdle = time.Minute
)

// Config configures a Handler.
type Config struct {
	// Enabled turns the minting endpoint on. Off by default: minted
	// credentials relay for whoever asks.
	Enabled bool
	// Secret is the TURN REST secret the credentials are minted with (one
	// of the relay's auth secrets). Required when Enabled, unless
	// SecretSource is set.
	Secret string
	// SecretSource, when set, is asked for the secret at each minting
	// instead of Secret, so that minting follows a server whose secrets
	// are rotated while it runs (SIGHUP). An error or an empty secret
	// answers 503 Service Unavailable: the server has no secret to mint
	// with at the moment.
	SecretSource func() (string, error)
	// TTL is the credentials' lifetime; 0 means DefaultTTL.
	TTL time.Duration
	// Rate and Burst limit minting per source address; 0 means DefaultRate
	// and DefaultBurst.
	Rate  rate.Limit
	Burst int
	// Host is written in the doors' URLs; empty means the host the browser
	// asked for (the request's Host header).
	Host string
	// TURNPort, TURNSPort and AltPort are given to probe.Doors; 0 means
	// probe's defaults (3478, 5349, 443).
	TURNPort, TURNSPort, AltPort int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Handler serves the page (on any path but CredentialsPath) and the
// minting endpoint.
type Handler struct {
	cfg   Config
	doors []probe.Door

	mu      sync.Mutex
	sources map[netip.Addr]*source
}

type source struct {
	lim  *rate.Limiter
	last time.Time
}

// New checks cfg and returns a Handler.
func New(cfg Config) (*Handler, error) {
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.TTL < 0 || cfg.TTL > MaxTTL {
		return nil, fmt.Errorf("selftest: ttl %s: want more than 0 and at most %s", cfg.TTL, MaxTTL)
	}
	if cfg.Rate == 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.Burst == 0 {
		cfg.Burst = DefaultBurst
	}
	if cfg.Rate < 0 || cfg.Burst < 0 {
		return nil, errors.New("selftest: rate and burst must not be negative")
	}
	if cfg.Enabled && cfg.Secret == "" && cfg.SecretSource == nil {
		return nil, errors.New("selftest: enabled without a REST secret to mint credentials with")
	}
	if cfg.TURNPort == 0 {
		cfg.TURNPort = probe.DefaultTURNPort
	}
	if cfg.TURNSPort == 0 {
		cfg.TURNSPort = probe.DefaultTURNSPort
	}
	if cfg.AltPort == 0 {
		cfg.AltPort = probe.DefaultAltPort
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	doors := probe.Doors(cfg.TURNPort, cfg.TURNSPort, cfg.AltPort)
	for _, d := range doors {
		if err := d.Check(); err != nil {
			return nil, fmt.Errorf("selftest: door %s: %w", d.Name, err)
		}
	}
	return &Handler{cfg: cfg, doors: doors, sources: map[netip.Addr]*source{}}, nil
}

// ServeHTTP answers CredentialsPath with credentials and every other path
// with the page.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == CredentialsPath {
		h.mint(w, r)
		return
	}
	h.page(w, r)
}

// PageDoor is one door as the page gets it: probe's door with its URLs on
// the page's host.
type PageDoor struct {
	probe.Door
	URL string `json:"url"`
	// STUNURL is set for UDP doors: browsers speak STUN over UDP only.
	STUNURL string `json:"stun_url,omitempty"`
}

// Words are the words of probe the page uses.
type Words struct {
	CallsWork         string `json:"calls_work"`
	CallsWorkOnlyOver string `json:"calls_work_only_over"`
	CallsFail         string `json:"calls_fail"`
	DoorWorks         string `json:"door_works"`
	DoorFails         string `json:"door_fails"`
	And               string `json:"and"`
	None              string `json:"none"`
}

// PageData is the JSON blob embedded in the page.
type PageData struct {
	Enabled     bool       `json:"enabled"`
	Credentials string     `json:"credentials"`
	Doors       []PageDoor `json:"doors"`
	Words       Words      `json:"words"`
}

// Credentials is the minting endpoint's answer.
type Credentials struct {
	Username   string `json:"username"`
	Credential string `json:"credential"`
	TTLSeconds int64  `json:"ttl_seconds"`
}

//go:embed page.html
var pageHTML string

// dataMark is where the page's JSON blob goes.
const dataMark = "/*POSTERN-SELFTEST-DATA*/"

// Data is what the page is rendered with for a request naming host.
func (h *Handler) Data(host string) PageData {
	d := PageData{
		Enabled:     h.cfg.Enabled,
		Credentials: CredentialsPath,
		Words: Words{
			CallsWork: probe.WordCallsWork, CallsWorkOnlyOver: probe.WordCallsWorkOnlyOver,
			CallsFail: probe.WordCallsFail, DoorWorks: probe.WordDoorWorks, DoorFails: probe.WordDoorFails,
			And: probe.WordAnd, None: probe.WordNone,
		},
	}
	for _, door := range h.doors {
		pd := PageDoor{Door: door, URL: door.URL(host)}
		if door.Transport == probe.UDP {
			pd.STUNURL = door.STUNURL(host)
		}
		d.Doors = append(d.Doors, pd)
	}
	return d
}

// host is the host the doors' URLs name.
func (h *Handler) host(r *http.Request) string {
	if h.cfg.Host != "" {
		return h.cfg.Host
	}
	host := r.Host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		host = hh
	}
	return strings.Trim(host, "[]")
}

func (h *Handler) page(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	blob, err := json.Marshal(h.Data(h.host(r))) // escapes <, > and &: safe inside <script>
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	body := strings.Replace(pageHTML, dataMark, string(blob), 1)
	hdr := w.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Cache-Control", "no-store")
	// Nothing from elsewhere: the page's own inline script and style, and
	// fetches to this origin only.
	hdr.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	_, _ = io.WriteString(w, body)
}

func (h *Handler) mint(w http.ResponseWriter, r *http.Request) {
	if !h.cfg.Enabled {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		http.Error(w, "bad remote address", http.StatusBadRequest)
		return
	}
	if !h.allow(ap.Addr().Unmap()) {
		w.Header().Set("Retry-After", "10")
		http.Error(w, "too many self-tests from your address: try again in a minute", http.StatusTooManyRequests)
		return
	}
	secret := h.cfg.Secret
	if h.cfg.SecretSource != nil {
		var err error
		if secret, err = h.cfg.SecretSource(); err != nil || secret == "" {
			// The server has no REST secret in force right now (a reload
			// removed them): nothing could verify what would be minted.
			w.Header().Set("Retry-After", "60")
			http.Error(w, "the self-test cannot mint credentials right now: ask the server's operator", http.StatusServiceUnavailable)
			return
		}
	}
	user, pass := auth.MintREST(secret, User, h.cfg.TTL, h.cfg.Now())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(Credentials{Username: user, Credential: pass, TTLSeconds: int64(h.cfg.TTL / time.Second)})
}

// allow takes a token from addr's bucket. The table of sources is bounded:
// when full, idle entries are dropped, and if none is idle the request is
// refused (a flood from many addresses does not grow memory).
func (h *Handler) allow(addr netip.Addr) bool {
	now := h.cfg.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.sources[addr]
	if !ok {
		if len(h.sources) >= maxSources {
			for a, e := range h.sources {
				if now.Sub(e.last) > sourceIdle {
					delete(h.sources, a)
				}
			}
			if len(h.sources) >= maxSources {
				return false
			}
		}
		s = &source{lim: rate.NewLimiter(h.cfg.Rate, h.cfg.Burst)}
		h.sources[addr] = s
	}
	s.last = now
	return s.lim.AllowN(now, 1)
}

// Mount returns a handler that answers PagePath and CredentialsPath with h
// and everything else with next: the credentials API listener serves the
// self-test page on /test beside its own endpoint.
func Mount(h *Handler, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == PagePath || r.URL.Path == CredentialsPath {
			h.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}
