package admin

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"
)

// dashboardCookie is the cookie a browser gets for the dashboard once it
// has shown the admin token.
const dashboardCookie = "postern_admin"

// maxLoginBody bounds the login form's body: a token and a field name.
const maxLoginBody = 4 << 10

// sessionCookieValue is the dashboard cookie's value for the configured
// token: HMAC-SHA256 keyed with the token, so the cookie is not the token
// (a cookie that leaks opens the read-only dashboard, not /metrics or the
// session and drain API), it outlives a restart, and changing the token
// signs every browser out.
func (s *Server) sessionCookieValue() string {
	mac := hmac.New(sha256.New, []byte(s.cfg.Token))
	mac.Write([]byte("postern admin dashboard session v1"))
	return hex.EncodeToString(mac.Sum(nil))
}

// tokenMatches compares a token shown by a client with the configured one
// in constant time.
func (s *Server) tokenMatches(got string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.Token)) == 1
}

// dashboardAllowed reports whether r may read the dashboard: no token is
// configured, or r carries the bearer token or the dashboard cookie.
func (s *Server) dashboardAllowed(r *http.Request) bool {
	if s.cfg.Token == "" {
		return true
	}
	if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && s.tokenMatches(bearer) {
		return true
	}
	c, err := r.Cookie(dashboardCookie)
	return err == nil && subtle.ConstantTimeCompare([]byte(c.Value), []byte(s.sessionCookieValue())) == 1
}

// dashboardAuthorized wraps the dashboard's JSON endpoint: the bearer
// token or the dashboard cookie (RFC 6750 §3: 401 with WWW-Authenticate).
func (s *Server) dashboardAuthorized(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.dashboardAllowed(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="postern admin"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong admin token: send \"Authorization: Bearer TOKEN\", or open the dashboard at /?token=TOKEN first")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// signIn sets the dashboard cookie and sends the browser to the dashboard
// with a 303, so that the token leaves the address bar (and the history
// entry, and any Referer) at once. The cookie is HttpOnly (no script reads
// it), SameSite=Strict (no other site's page makes the browser send it)
// and lasts as long as the browser session. It is not Secure: the admin
// listener speaks plain HTTP (keep it on loopback, or behind a TLS proxy).
func (s *Server) signIn(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name:     dashboardCookie,
		Value:    s.sessionCookieValue(),
		Path:     "/",
		HttpOnly: true,
		SameSite: http.SameSiteStrictMode,
	})
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// wantsHTML reports whether the client asked for HTML, as browsers do for
// a page load; curl's */* and Go's missing Accept get the plain-text index.
func wantsHTML(r *http.Request) bool {
	for part := range strings.SplitSeq(r.Header.Get("Accept"), ",") {
		mt, _, _ := strings.Cut(part, ";")
		if strings.EqualFold(strings.TrimSpace(mt), "text/html") {
			return true
		}
	}
	return false
}

// root answers GET /: the dashboard for browsers, the plain-text index of
// endpoints for everyone else (also at /help). With a token configured,
// /?token=TOKEN signs the browser in (then redirects to /), and a browser
// without the cookie gets 401 and a form to enter the token.
func (s *Server) root(w http.ResponseWriter, r *http.Request) {
	if !wantsHTML(r) {
		s.index(w, r)
		return
	}
	if s.cfg.Token != "" && r.URL.Query().Has("token") {
		if s.tokenMatches(r.URL.Query().Get("token")) {
			s.signIn(w, r)
			return
		}
		s.loginPage(w, http.StatusUnauthorized, "That token is not the admin token of this server.")
		return
	}
	if !s.dashboardAllowed(r) {
		s.loginPage(w, http.StatusUnauthorized, "")
		return
	}
	s.dashboardPage(w)
}

// login answers POST / from the sign-in form: the token in the body keeps
// it out of the address bar and the history altogether.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Token == "" {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
	if err := r.ParseForm(); err != nil {
		s.loginPage(w, http.StatusBadRequest, "The form could not be read; enter the token again.")
		return
	}
	if !s.tokenMatches(r.PostForm.Get("token")) {
		s.loginPage(w, http.StatusUnauthorized, "That token is not the admin token of this server.")
		return
	}
	s.signIn(w, r)
}
