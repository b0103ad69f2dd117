package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"reflect"
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
// serveAction registers SIGHUP before the server starts, so the signal never
// kills a running server. On each reload the file and the flags are read
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
//     what the credentials API mints and accepts.
//
// Everything else needs a restart: a reload that changes it logs a warning
// naming the keys and keeps the value in force. No allocation is touched.
// Their later requests (Refresh, CreatePermission, ChannelBind) are checked
// against the new credentials, so an allocation made with a secret or user
// that was removed keeps relaying until its lifetime ends, and cannot be
// refreshed.

// reloadSource tells serve when to reload and how to read the configuration.
type reloadSource struct {
	// load reads the configuration again (the file, then the flags); nil
	// disables reloading.
	load func() (settings, error)
	// signals delivers SIGHUP.
	signals <-chan os.Signal
	// requests asks for a reload and takes its result (tests); a nil reply
	// channel discards it.
	requests <-chan chan<- error
}

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

	// cur is the configuration in force. Only serve's goroutine reads and
	// writes it (at start, then in run).
	cur  settings
	mint atomic.Pointer[mintState]      // read by API requests
	api  atomic.Pointer[iceapi.Handler] // nil when the API is off

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
func newLive(s settings, secrets []string, generated bool, log *slog.Logger) (*live, error) {
	l := &live{log: log, nonceKey: make([]byte, nonceKeySize), cur: s, certChanged: make(chan struct{}, 1)}
	_, _ = rand.Read(l.nonceKey) // never fails (crypto/rand)
	if generated && len(secrets) > 0 {
		l.generated = secrets[0]
	}
	var err error
	if l.auth, err = l.newAuth(s); err != nil {
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
// started is the configuration after start, with the external address the
// relay may have discovered.
func (l *live) attach(srv *relay.Server, started settings) {
	l.srv = srv
	l.bound = srv.Addrs()
	if !l.cur.externalIP.IsValid() {
		l.external = started.externalIP
	}
	m := l.newMintState(l.cur)
	if m.err != nil && l.api.Load() != nil {
		l.log.Error("credentials API cannot mint", "err", m.err)
	}
	l.mint.Store(m)
}

// secretsFor returns the secrets s puts in force: its own, or, when it
// configures no credentials at all, the one generated at start.
func (l *live) secretsFor(s settings) []string {
	own := s.secrets
	if len(s.users) == 0 && len(s.keys) == 0 && len(s.secrets) == 0 && l.generated != "" {
		own = []string{l.generated}
	}
	if l.fleet != nil {
		if fleet := l.fleet.Secrets(); len(fleet) > 0 {
			return append(fleet, own...) // the fleet's first mints
		}
	}
	return own
}

// newAuth builds the authenticator for s with the run's nonce key.
func (l *live) newAuth(s settings) (*auth.Authenticator, error) {
	secrets := l.secretsFor(s)
	if len(s.users) == 0 && len(s.keys) == 0 && len(secrets) == 0 {
		return nil, errors.New("auth: no users and no secrets: nobody could allocate: configure auth.users, auth.users_file or auth.secrets")
	}
	a, err := auth.New(auth.Config{
		Realm:         s.realm(),
		Users:         s.users,
		Keys:          s.keys,
		Secrets:       secrets,
		NonceLifetime: config.NonceLifetime(s.declared),
		NonceKey:      l.nonceKey,
	})
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return a, nil
}

// newHandler builds the credentials API handler for s, or nil when the API
// is off.
func (l *live) newHandler(s settings) (*iceapi.Handler, error) {
	if s.api.listen == "" {
		return nil, nil
	}
	h, err := iceapi.New(iceapi.Config{
		Mint:         l.mintICE,
		MintRequest:  l.fleetMint,
		Keys:         s.api.keys,
		DefaultUser:  s.ice.user,
		DefaultTTL:   s.ice.ttl,
		MaxTTL:       s.api.maxTTL,
		AllowOrigins: s.api.origins,
		Logger:       l.log,
	})
	if err != nil {
		return nil, fmt.Errorf("credentials_api: %w", err)
	}
	return h, nil
}

// newMintState returns what the API mints from under s.
func (l *live) newMintState(s settings) *mintState {
	secrets := l.secretsFor(s)
	if len(secrets) == 0 {
		return &mintState{err: fmt.Errorf("no auth.secrets to mint with: add one (--%s)", flagSecret)}
	}
	if !s.externalIP.IsValid() {
		s.externalIP = l.external // discovered at start; restart-only anyway
	}
	urls, err := advertisedURLs(l.bound, s)
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
	return mintConfiguration(m.urls, m.secret, user, ttl, time.Now()), nil
}

// ServeHTTP serves the credentials API with the handler in force.
func (l *live) ServeHTTP(w http.ResponseWriter, r *http.Request) { l.api.Load().ServeHTTP(w, r) }

// run reloads on every signal or request until ctx is cancelled.
func (l *live) run(ctx context.Context, src reloadSource) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-src.signals:
			_ = l.reload(src.load)
		case <-l.certChanged:
			l.reloadCertificate()
		case <-l.fleetChanged: // nil without a fleet
			l.fleetSecretsChanged()
		case reply := <-src.requests:
			err := l.reload(src.load)
			if reply != nil {
				reply <- err
			}
		}
	}
}

// reload reads the configuration with load and applies what may change at
// run time; see the comment at the top of this file. It logs the outcome;
// on error nothing changes.
func (l *live) reload(load func() (settings, error)) error {
	err := l.apply(load)
	if err != nil {
		l.log.Error("configuration reload failed: the previous configuration stays in force", "err", err)
	}
	return err
}

func (l *live) apply(load func() (settings, error)) error {
	if load == nil {
		return errors.New("reloading is not available")
	}
	s, err := load()
	if err != nil {
		return err
	}
	next := l.cur
	takeReloadable(&next, s)

	// Build everything first, so that a failure changes nothing.
	a, err := l.newAuth(next)
	if err != nil {
		return err
	}
	h, err := l.newHandler(next)
	if err != nil {
		return err
	}
	policy := auth.NewPeerPolicy(next.allowPeers, next.denyPeers)
	m := l.newMintState(next)
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
	l.cur = next

	if keys := restartOnly(next, s); len(keys) > 0 {
		l.log.Warn("configuration reload: these settings changed but take effect only on restart; the running values stay",
			"keys", strings.Join(keys, " "))
	}
	if m.err != nil && h != nil {
		l.log.Error("credentials API cannot mint", "err", m.err)
	}
	l.log.Info("configuration reloaded", "users", len(next.users)+len(next.keys), "secrets", len(l.secretsFor(next)),
		"allow_peers", len(next.allowPeers), "deny_peers", len(next.denyPeers))
	return nil
}

// takeReloadable copies into dst the settings of src that a reload applies.
// The credentials API's settings follow only while its listen address is
// unchanged (a new address needs a restart, and its keys go with it).
func takeReloadable(dst *settings, src settings) {
	dst.users, dst.keys, dst.secrets = src.users, src.keys, src.secrets
	dst.allowPeers, dst.denyPeers = src.allowPeers, src.denyPeers
	dst.tlsCert, dst.tlsKey = src.tlsCert, src.tlsKey
	dst.ice = src.ice
	dst.declared = config.TakeReloadable(config.Settings(), dst.declared, src.declared)
	if src.api.listen == dst.api.listen {
		dst.api = src.api
	}
}

// restartOnly names the settings in which loaded differs from running
// after takeReloadable: those that need a restart.
func restartOnly(running, loaded settings) []string {
	// Each entry names a restart-only setting and copies the running value
	// over the loaded one; whatever still differs after all of them is a
	// setting this list does not know yet, reported as such.
	fields := []struct {
		key  string
		take func(dst *settings)
	}{
		{"listen", func(d *settings) { d.listeners, d.listenersExplicit = running.listeners, running.listenersExplicit }},
		{"relay.ip", func(d *settings) { d.relayIP, d.relayIP6 = running.relayIP, running.relayIP6 }},
		{"relay.default_family", func(d *settings) { d.defaultFamily = running.defaultFamily }},
		{"relay.external_ip", func(d *settings) {
			d.externalIP, d.externalIPs, d.externalAuto = running.externalIP, running.externalIPs, running.externalAuto
		}},
		{"relay.stun_servers", func(d *settings) { d.stunServers = running.stunServers }},
		{"admin", func(d *settings) { d.admin = running.admin }},
		{"[web], proxy_protocol_from and tls.acme*", func(d *settings) { d.port443 = running.port443 }},
		{"credentials_api", func(d *settings) { d.api = running.api }},
	}
	// The settings declared in package config say themselves whether
	// they need a restart.
	keys := config.RestartChanged(config.Settings(), running.declared, loaded.declared)
	rest := loaded
	rest.declared = running.declared
	for _, f := range fields {
		before := rest
		f.take(&rest)
		if !reflect.DeepEqual(before, rest) {
			keys = append(keys, f.key)
		}
	}
	if !reflect.DeepEqual(running, rest) {
		keys = append(keys, "(other settings)")
	}
	return keys
}

var _ http.Handler = (*live)(nil)
