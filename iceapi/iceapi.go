package iceapi

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Path is where the endpoint is served.
const Path = "/v1/ice-servers"

// Configuration is the RTCConfiguration dictionary (W3C WebRTC 1.0 §4.2.1)
// with only its iceServers member: the JSON a page passes to
// `new RTCPeerConnection(...)` as is.
type Configuration struct {
	ICEServers []ICEServer `json:"iceServers"`
}

// ICEServer is one RTCIceServer (W3C WebRTC 1.0 §4.2.4). Browsers ignore
// the credentials for stun: URLs, so one entry may carry every URL of a
// server.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// MintFunc returns the ICE servers with fresh credentials for user, valid for
// ttl. It is called once per authorized request, concurrently.
type MintFunc func(user string, ttl time.Duration) (Configuration, error)

// Request is what a fleet's MintRequestFunc is asked for: the user and TTL
// as for MintFunc, the region the request names ("" when none), how many
// servers it wants (at least 1, at most MaxServers) and the caller's IP
// address.
type Request struct {
	User    string
	TTL     time.Duration
	Region  string
	Servers int
	Client  netip.Addr
}

// MintRequestFunc is MintFunc for a fleet (Config.MintRequest).
type MintRequestFunc func(Request) (Configuration, error)

// MaxServers is the most servers a request may ask for ("servers").
const MaxServers = 3

// maxRegionLen bounds the "region" of a request.
const maxRegionLen = 64

// Limits on the input.
const (
	// MinKeyLen is the shortest API key New accepts, in bytes.
	MinKeyLen = 16
	// MaxUserLen is the longest user name a request may give, in bytes; the
	// whole TURN username (EXPIRY:USER) must stay below 509 bytes (RFC 8489
	// §14.3).
	MaxUserLen = 256
	// maxBody bounds the request body: {"user": ..., "ttl": ...} is tiny.
	maxBody = 4 << 10
	// corsMaxAge is how long a browser may cache a preflight answer
	// (Chromium caps it at 2 hours).
	corsMaxAge = 10 * time.Minute
)

// Error codes: the "error" member of every error response.
const (
	CodeUnauthorized     = "unauthorized"       // 401: missing or wrong API key
	CodeBadRequest       = "bad_request"        // 400: the body is not what the API takes
	CodeTooLarge         = "payload_too_large"  // 413: the body is larger than 4 KiB
	CodeNotFound         = "not_found"          // 404: another path than Path
	CodeMethodNotAllowed = "method_not_allowed" // 405: not POST (or OPTIONS)
	CodeOriginForbidden  = "origin_not_allowed" // 403: CORS preflight from an origin not allowed
	CodeInternal         = "internal"           // 500: minting failed; the server log says why
	CodeUnavailable      = "unavailable"        // 503: no server to hand out now (ErrUnavailable)
)

// ErrUnavailable marks a mint error that means no server can be handed
// out now (a fleet whose nodes all drain or are silent): answered 503
// unavailable with Retry-After and the error's text, which therefore must
// hold nothing secret. Other mint errors are 500 internal, their text in
// the log only.
var ErrUnavailable = errors.New("no TURN server is available now")

// retryAfter is the Retry-After of a 503, in seconds (RFC 9110 §10.2.3):
// a fleet's registry changes within a few heartbeats.
const retryAfter = "5"

// Config configures a Handler.
type Config struct {
	// Mint builds the response. Required unless MintRequest is set.
	Mint MintFunc
	// MintRequest, when set, builds the response instead of Mint, and
	// requests may also give "region" (a region name) and "servers" (how
	// many servers, 1 to MaxServers): a fleet's credentials API. Without
	// it those members are unknown fields (400), as before.
	MintRequest MintRequestFunc
	// Keys are the API keys accepted as "Authorization: Bearer KEY"; at
	// least one, each at least MinKeyLen bytes.
	Keys []string
	// DefaultUser is the user when a request names none. Required.
	DefaultUser string
	// DefaultTTL is the credential lifetime when a request gives none; it is
	// clamped to MaxTTL too. Required.
	DefaultTTL time.Duration
	// MaxTTL caps the lifetime a request may ask for. Required.
	MaxTTL time.Duration
	// AllowOrigins lists the browser origins ("https://app.example.org")
	// that may call the API directly (CORS); "*" allows every origin. Empty:
	// no CORS headers at all, so only servers can use the API.
	AllowOrigins []string
	// Logger receives one line per request refused for its key (info) and
	// per credential minted (debug); slog.Default() when nil.
	Logger *slog.Logger
}

// Handler serves POST Path. Build it with New.
type Handler struct {
	mint        MintFunc
	mintRequest MintRequestFunc
	keys        [][sha256.Size]byte // SHA-256 of each key: equal lengths for constant-time comparison
	defaultUser string
	defaultTTL  time.Duration
	maxTTL      time.Duration
	anyOrigin   bool
	origins     map[string]bool
	log         *slog.Logger
}

// New checks cfg and returns a Handler. It copies what it keeps.
func New(cfg Config) (*Handler, error) {
	if cfg.Mint == nil && cfg.MintRequest == nil {
		return nil, errors.New("iceapi: Config.Mint is required")
	}
	if len(cfg.Keys) == 0 {
		return nil, errors.New("iceapi: no API key: give at least one (generate one with `openssl rand -base64 32`)")
	}
	h := &Handler{
		mint:        cfg.Mint,
		mintRequest: cfg.MintRequest,
		defaultUser: cfg.DefaultUser,
		defaultTTL:  cfg.DefaultTTL,
		maxTTL:      cfg.MaxTTL,
		origins:     make(map[string]bool),
		log:         cfg.Logger,
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	for i, k := range cfg.Keys {
		if err := CheckKey(k); err != nil {
			return nil, fmt.Errorf("iceapi: API key %d: %w", i+1, err)
		}
		h.keys = append(h.keys, sha256.Sum256([]byte(k)))
	}
	if err := CheckUser(cfg.DefaultUser); err != nil {
		return nil, fmt.Errorf("iceapi: default user: %w", err)
	}
	if cfg.MaxTTL < time.Second || cfg.DefaultTTL < time.Second {
		return nil, fmt.Errorf("iceapi: default TTL %v and maximum TTL %v: both must be at least 1s", cfg.DefaultTTL, cfg.MaxTTL)
	}
	for _, o := range cfg.AllowOrigins {
		norm, err := ParseOrigin(o)
		if err != nil {
			return nil, fmt.Errorf("iceapi: %w", err)
		}
		if norm == "*" {
			h.anyOrigin = true
		}
		h.origins[norm] = true
	}
	return h, nil
}

// CheckKey reports whether k is acceptable as an API key: at least
// MinKeyLen bytes of printable ASCII without spaces (RFC 6750 §2.1 allows a
// bearer token no other characters worth having).
func CheckKey(k string) error {
	if len(k) < MinKeyLen {
		return fmt.Errorf("%d bytes, want at least %d (generate one with `openssl rand -base64 32`)", len(k), MinKeyLen)
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("byte %d is not printable ASCII or is a space: keys go in an HTTP header (use `openssl rand -base64 32`)", i+1)
		}
	}
	return nil
}

// CheckUser reports whether u may be the USER part of a minted username:
// 1 to MaxUserLen bytes of UTF-8 without control characters.
func CheckUser(u string) error {
	switch {
	case u == "":
		return errors.New("empty user name")
	case len(u) > MaxUserLen:
		return fmt.Errorf("user name is %d bytes, limit %d", len(u), MaxUserLen)
	case !utf8.ValidString(u):
		return errors.New("user name is not valid UTF-8")
	case strings.ContainsFunc(u, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return errors.New("user name contains a control character")
	}
	return nil
}

// ParseOrigin checks a CORS origin as configured and returns it in the form
// browsers send in the Origin header: "*", or SCHEME://HOST[:PORT] with
// scheme http or https, lower case, no path, no trailing slash.
func ParseOrigin(s string) (string, error) {
	if s == "*" {
		return s, nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("origin %q: write SCHEME://HOST[:PORT] with scheme http or https, e.g. https://app.example.org, or \"*\"", s)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("origin %q: an origin is only SCHEME://HOST[:PORT]: drop the path, query or user (write %s://%s)", s, u.Scheme, u.Host)
	}
	if strings.HasSuffix(s, "/") {
		return "", fmt.Errorf("origin %q: drop the trailing slash: browsers send %s://%s", s, u.Scheme, u.Host)
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}

// errorBody is the JSON of every error response.
type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// request is the optional JSON body. TTL stays raw so that only a JSON
// integer is accepted (not 3600.5, not "1h").
type request struct {
	User    *string         `json:"user"`
	TTL     json.RawMessage `json:"ttl"`
	Region  *string         `json:"region"`
	Servers json.RawMessage `json:"servers"`
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	originOK := h.cors(w, r)
	if r.URL.Path != Path {
		writeError(w, http.StatusNotFound, CodeNotFound, "no such endpoint: POST "+Path)
		return
	}
	switch r.Method {
	case http.MethodPost:
	case http.MethodOptions:
		h.options(w, r, originOK)
		return
	default:
		w.Header().Set("Allow", "POST, OPTIONS")
		writeError(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed, r.Method+" is not allowed: use POST "+Path)
		return
	}

	// RFC 6750 §3: a missing or invalid token is 401 with a
	// WWW-Authenticate challenge.
	if !h.authorized(r.Header.Get("Authorization")) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="postern"`)
		h.log.Info("credentials API: request refused: missing or wrong API key", "remote", r.RemoteAddr)
		writeError(w, http.StatusUnauthorized, CodeUnauthorized, "missing or wrong API key: send the header Authorization: Bearer KEY")
		return
	}

	req, status, err := h.parse(w, r)
	if err != nil {
		code := CodeBadRequest
		if status == http.StatusRequestEntityTooLarge {
			code = CodeTooLarge
		}
		writeError(w, status, code, err.Error())
		return
	}
	user, ttl := req.User, req.TTL
	var conf Configuration
	if h.mintRequest != nil {
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
			req.Client = ap.Addr().Unmap()
		}
		conf, err = h.mintRequest(req)
	} else {
		conf, err = h.mint(user, ttl)
	}
	if errors.Is(err, ErrUnavailable) {
		h.log.Warn("credentials API: no server to hand out", "user", user, "err", err)
		w.Header().Set("Retry-After", retryAfter)
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, err.Error())
		return
	}
	if err != nil {
		h.log.Error("credentials API: minting failed", "user", user, "err", err)
		writeError(w, http.StatusInternalServerError, CodeInternal, "could not mint credentials; the server log says why")
		return
	}
	h.log.Debug("credentials API: minted", "user", user, "ttl", ttl, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, conf)
}

// authorized reports whether header is "Bearer KEY" with a configured key.
// Every key is compared, in constant time, whatever matches.
func (h *Handler) authorized(header string) bool {
	scheme, token, ok := strings.Cut(header, " ")
	// RFC 9110 §11.1: the scheme is case-insensitive.
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	match := 0
	for i := range h.keys {
		match |= subtle.ConstantTimeCompare(sum[:], h.keys[i][:])
	}
	return match == 1
}

// parse reads the optional body and returns what to mint for, or the
// status and reason of a refusal.
func (h *Handler) parse(w http.ResponseWriter, r *http.Request) (Request, int, error) {
	want := `send {"user": "NAME", "ttl": SECONDS}, both optional, or no body`
	if h.mintRequest != nil {
		want = `send {"user": "NAME", "ttl": SECONDS, "region": "REGION", "servers": N}, all optional, or no body`
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return Request{}, http.StatusRequestEntityTooLarge, fmt.Errorf("body larger than %d bytes: %s", maxBody, want)
		}
		return Request{}, http.StatusBadRequest, fmt.Errorf("reading the body: %v", err)
	}
	out := Request{User: h.defaultUser, TTL: h.defaultTTL, Servers: 1}
	if len(bytes.TrimSpace(data)) > 0 {
		var req request
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return Request{}, http.StatusBadRequest, fmt.Errorf("invalid JSON body: %v: %s", err, want)
		}
		if _, err := dec.Token(); err != io.EOF {
			return Request{}, http.StatusBadRequest, fmt.Errorf("invalid JSON body: data after the object: %s", want)
		}
		if h.mintRequest == nil {
			// Not a fleet: the members of one are unknown, as they were
			// before fleets.
			for name, present := range map[string]bool{"region": req.Region != nil, "servers": len(req.Servers) > 0} {
				if present {
					return Request{}, http.StatusBadRequest, fmt.Errorf("invalid JSON body: json: unknown field %q: %s", name, want)
				}
			}
		}
		if req.User != nil {
			if err := CheckUser(*req.User); err != nil {
				return Request{}, http.StatusBadRequest, fmt.Errorf("user: %v (omit it for the default user)", err)
			}
			out.User = *req.User
		}
		if len(req.TTL) > 0 && string(req.TTL) != "null" {
			secs, err := strconv.ParseInt(string(req.TTL), 10, 64)
			if err != nil || secs <= 0 {
				return Request{}, http.StatusBadRequest, fmt.Errorf("ttl %s: want a positive whole number of seconds, e.g. 3600", req.TTL)
			}
			// Compare in seconds: multiplying first could overflow.
			out.TTL = h.maxTTL
			if secs < int64(h.maxTTL/time.Second) {
				out.TTL = time.Duration(secs) * time.Second
			}
		}
		if req.Region != nil {
			if err := checkRegion(*req.Region); err != nil {
				return Request{}, http.StatusBadRequest, fmt.Errorf("region: %v (omit it for any region)", err)
			}
			out.Region = *req.Region
		}
		if len(req.Servers) > 0 && string(req.Servers) != "null" {
			n, err := strconv.Atoi(string(req.Servers))
			if err != nil || n < 1 || n > MaxServers {
				return Request{}, http.StatusBadRequest, fmt.Errorf("servers %s: want a whole number from 1 to %d", req.Servers, MaxServers)
			}
			out.Servers = n
		}
	}
	out.TTL = min(out.TTL, h.maxTTL)
	return out, 0, nil
}

// checkRegion reports whether s may name a region: 1 to maxRegionLen
// letters, digits, '.', '_' or '-'.
func checkRegion(s string) error {
	if s == "" || len(s) > maxRegionLen {
		return fmt.Errorf("%d bytes, want 1 to %d", len(s), maxRegionLen)
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return errors.New("only letters, digits, '.', '_' and '-'")
		}
	}
	return nil
}

// cors sets the CORS headers of an actual response and reports whether the
// request's origin is allowed.
func (h *Handler) cors(w http.ResponseWriter, r *http.Request) bool {
	if len(h.origins) == 0 {
		return false
	}
	if !h.anyOrigin {
		// The answer depends on Origin: caches must key on it.
		w.Header().Add("Vary", "Origin")
	}
	origin := r.Header.Get("Origin")
	switch {
	case origin == "":
		return false
	case h.anyOrigin:
		w.Header().Set("Access-Control-Allow-Origin", "*")
	case h.origins[strings.ToLower(origin)]:
		w.Header().Set("Access-Control-Allow-Origin", origin)
	default:
		return false
	}
	return true
}

// options answers OPTIONS: a CORS preflight (Fetch standard §3.2.2) when it
// carries Access-Control-Request-Method, else the allowed methods. Preflights
// carry no credentials, so they are answered without an API key.
func (h *Handler) options(w http.ResponseWriter, r *http.Request, originOK bool) {
	if r.Header.Get("Access-Control-Request-Method") == "" {
		w.Header().Set("Allow", "POST, OPTIONS")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if !originOK {
		writeError(w, http.StatusForbidden, CodeOriginForbidden,
			fmt.Sprintf("origin %q may not call this API from a browser: the server's allowed origins do not include it", r.Header.Get("Origin")))
		return
	}
	hdr := w.Header()
	hdr.Set("Access-Control-Allow-Methods", "POST")
	// A wildcard would not cover Authorization: it must be named.
	hdr.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
	hdr.Set("Access-Control-Max-Age", strconv.Itoa(int(corsMaxAge/time.Second)))
	w.WriteHeader(http.StatusNoContent)
}

// writeError writes an error response.
func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, errorBody{Error: code, Message: message})
}

// writeJSON writes v as the JSON response with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":"internal","message":"encoding the response failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

var _ http.Handler = (*Handler)(nil)
