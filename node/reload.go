package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/cluster"
	"github.com/postern/postern/config"
	"github.com/postern/postern/iceapi"
	"github.com/postern/postern/relay"
)

// Reloading the configuration without a restart (SIGHUP).
//
// The command registers SIGHUP before the server starts, so the signal
// never kills a running server. On each reload the file and the flags are read
// and validated again exactly as at start; if anything is wrong the error is
// logged and the configuration in force stays. Otherwise what can change at
// run time is swapped in, each piece atomically:
//
//   - auth.users, auth.users_file, auth.secrets and auth.nonce_lifetime: a
//     new auth.Authenticator (relay.Server.SetAuth) with the realm and the
//     nonce key of the running server, so nonces handed out before the
//     reload stay valid;
//   - relay.allow_peers and relay.deny_peers: a new peer policy
//     (relay.Server.SetPolicy), applied to the next packet of every
//     allocation, including permissions and channels made before;
//   - tls.cert and tls.key: read again (relay.Server.SetCertificate), for new
//     handshakes; the files are also watched, so a renewal that rewrites
//     them is picked up without a SIGHUP (certwatch.go);
//   - [ice_servers], and credentials_api.api_keys, max_ttl and allow_origins:
//     what the credentials API mints and accepts (while its listen address
//     is unchanged).
//
// Which settings a reload takes is data: the Restart and ReloadsWith of
// their declarations (config.TakeReloadable, config.RestartChanged). A
// reload that changes a restart-only one logs a warning naming the keys
// and keeps the value in force. No allocation is touched.
// Their later requests (Refresh, CreatePermission, ChannelBind) are checked
// against the new credentials, so an allocation made with a secret or user
// that was removed keeps relaying until its lifetime ends, and cannot be
// refreshed.

// nonceKeySize is the size of the nonce key drawn once per run.
const nonceKeySize = 32

// live is what a reload may change in a running server, and the minting
// behind the credentials API.
type live struct {
	log      *slog.Logger
	nonceKey []byte // one per run: authenticators made by reloads accept the nonces of earlier ones
	// generated is the secret made at start because nothing was configured,
	// or "". It stays in force while nothing is configured.
	generated string
	// auth is the authenticator made at start, for relay.Config.
	auth *auth.Authenticator

	srv   *relay.Server         // set by attach
	bound []relay.BoundListener // set by attach
	// external is the advertised address the relay discovered at start
	// (relay.external_ip = "auto"), or invalid; set by attach.
	external netip.Addr

	// cur is the configuration in force. Only Run's goroutine reads and
	// writes it (at start, then in run).
	cur   config.Values
	creds credentials                    // of cur, the users file read once per load
	mint  atomic.Pointer[mintState]      // read by API requests
	api   atomic.Pointer[iceapi.Handler] // nil when the API is off

	// certChanged is signalled by watchCertFiles when the certificate
	// files change (a renewal): run reloads the certificate alone.
	certChanged chan struct{}

	// The fleet ([cluster], cluster.go), nil and unused without one:
	// its secrets come before the file's, fleetMint answers the
	// credentials API, and fleetChanged says the fleet's secrets changed.
	fleet        *cluster.Node
	fleetMint    iceapi.MintRequestFunc
	fleetChanged chan struct{}
}

// mintState is what the credentials API mints from.
type mintState struct {
	secret string   // the first secret in force, or "" (also set with err when only urls failed)
	urls   []string // the URLs of the bound listeners
	err    error    // why the API can mint nothing, or nil
}

// newLive prepares the credentials of s (secrets are those serve put in
// force: s.secrets or the one it generated) and the credentials API's
// handler; attach completes it once the relay is serving.
func newLive(s config.Values, c credentials, secrets []string, generated bool, log *slog.Logger) (*live, error) {
	l := &live{log: log, nonceKey: make([]byte, nonceKeySize), cur: s, creds: c, certChanged: make(chan struct{}, 1)}
	_, _ = rand.Read(l.nonceKey) // never fails (crypto/rand)
	if generated && len(secrets) > 0 {
		l.generated = secrets[0]
	}
	var err error
	if l.auth, err = l.newAuth(s, c); err != nil {
		return nil, err
	}
	h, err := l.newHandler(s)
	if err != nil {
		return nil, err
	}
	if h != nil {
		l.api.Store(h)
	}
	l.mint.Store(&mintState{err: errors.New("the relay is not serving yet")})
	return l, nil
}

// attach records the started relay and computes the URLs the API lists.
// external is the address the relay discovered at start, or invalid.
func (l *live) attach(srv *relay.Server, external netip.Addr) {
	l.srv = srv
	l.bound = srv.Addrs()
	l.external = external
	m := l.newMintState(l.cur, l.creds)
	if m.err != nil && l.api.Load() != nil {
		l.log.Error("credentials API cannot mint", "err", m.err)
	}
	l.mint.Store(m)
}

// secretsFor returns the secrets c puts in force: its own, or, when it
// configures no credentials at all, the one generated at start.
func (l *live) secretsFor(c credentials) []string {
	own := c.secrets
	if c.none() && l.generated != "" {
		own = []string{l.generated}
	}
	if l.fleet != nil {
		if fleet := l.fleet.Secrets(); len(fleet) > 0 {
			return append(fleet, own...) // the fleet's first mints
		}
	}
	return own
}

// newAuth builds the authenticator for s, whose credentials are c, with
// the run's nonce key.
func (l *live) newAuth(s config.Values, c credentials) (*auth.Authenticator, error) {
	secrets := l.secretsFor(c)
	if len(c.users) == 0 && len(c.keys) == 0 && len(secrets) == 0 {
		return nil, errors.New("auth: no users and no secrets: nobody could allocate: configure auth.users, auth.users_file or auth.secrets")
	}
	a, err := auth.New(auth.Config{
		Realm:         config.Realm(s),
		Users:         c.users,
		Keys:          c.keys,
		Secrets:       secrets,
		NonceLifetime: config.NonceLifetime(s),
		NonceKey:      l.nonceKey,
	})
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return a, nil
}

// newHandler builds the credentials API handler for s, or nil when the API
// is off.
func (l *live) newHandler(s config.Values) (*iceapi.Handler, error) {
	a, ice := config.APIOf(s), config.ICEOf(s)
	if a.Listen == "" {
		return nil, nil
	}
	h, err := iceapi.New(iceapi.Config{
		Mint:         l.mintICE,
		MintRequest:  l.fleetMint,
		Keys:         a.Keys,
		DefaultUser:  ice.User,
		DefaultTTL:   ice.TTL,
		MaxTTL:       a.MaxTTL,
		AllowOrigins: a.Origins,
		Logger:       l.log,
	})
	if err != nil {
		return nil, fmt.Errorf("credentials_api: %w", err)
	}
	return h, nil
}

// newMintState returns what the API mints from under s.
func (l *live) newMintState(s config.Values, c credentials) *mintState {
	secrets := l.secretsFor(c)
	if len(secrets) == 0 {
		return &mintState{err: fmt.Errorf("no auth.secrets to mint with: add one (--secret)")}
	}
	urls, err := AdvertisedURLs(l.bound, s, l.external) // discovered at start; restart-only anyway
	if err != nil {
		// The self-test page still mints with the secret: its doors name
		// the host the browser asked for.
		return &mintState{secret: secrets[0], err: fmt.Errorf("cannot tell which host clients dial: set ice_servers.host: %w", err)}
	}
	return &mintState{secret: secrets[0], urls: urls}
}

// mintICE is the credentials API's iceapi.MintFunc.
func (l *live) mintICE(user string, ttl time.Duration) (iceapi.Configuration, error) {
	m := l.mint.Load()
	if m.err != nil {
		return iceapi.Configuration{}, m.err
	}
	return iceapi.RESTConfiguration(m.urls, m.secret, user, ttl, time.Now()), nil
}

// ServeHTTP serves the credentials API with the handler in force.
func (l *live) ServeHTTP(w http.ResponseWriter, r *http.Request) { l.api.Load().ServeHTTP(w, r) }

// run reloads on every signal or request until ctx is cancelled.
func (l *live) run(ctx context.Context, src Reload) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-src.Signals:
			_ = l.reload(src.Load)
		case <-l.certChanged:
			l.reloadCertificate()
		case <-l.fleetChanged: // nil without a fleet
			l.fleetSecretsChanged()
		case reply := <-src.Requests:
			err := l.reload(src.Load)
			if reply != nil {
				reply <- err
			}
		}
	}
}

// reload reads the configuration with load and applies what may change at
// run time; see the comment at the top of this file. It logs the outcome;
// on error nothing changes.
func (l *live) reload(load func() (config.Values, error)) error {
	err := l.apply(load)
	if err != nil {
		l.log.Error("configuration reload failed: the previous configuration stays in force", "err", err)
	}
	return err
}

func (l *live) apply(load func() (config.Values, error)) error {
	if load == nil {
		return errors.New("reloading is not available")
	}
	s, err := load()
	if err != nil {
		return err
	}
	decls := config.Settings()
	next := config.TakeReloadable(decls, l.cur, s)

	// Build everything first, so that a failure changes nothing.
	c, err := loadCredentials(next)
	if err != nil {
		return err
	}
	a, err := l.newAuth(next, c)
	if err != nil {
		return err
	}
	h, err := l.newHandler(next)
	if err != nil {
		return err
	}
	allow, deny := config.Peers(next)
	policy := auth.NewPeerPolicy(allow, deny)
	m := l.newMintState(next, c)
	cert, err := loadCertificate(next)
	if err != nil {
		return err
	}

	l.srv.SetAuth(a)
	l.srv.SetPolicy(policy)
	l.srv.SetCertificate(cert) // nil (no files configured) keeps the one in force
	l.mint.Store(m)
	if h != nil {
		l.api.Store(h)
	}
	l.cur, l.creds = next, c

	if keys := config.RestartChanged(decls, next, s); len(keys) > 0 {
		l.log.Warn("configuration reload: these settings changed but take effect only on restart; the running values stay",
			"keys", strings.Join(keys, " "))
	}
	if m.err != nil && h != nil {
		l.log.Error("credentials API cannot mint", "err", m.err)
	}
	l.log.Info("configuration reloaded", "users", len(c.users)+len(c.keys), "secrets", len(l.secretsFor(c)),
		"allow_peers", len(allow), "deny_peers", len(deny))
	return nil
}

var _ http.Handler = (*live)(nil)
