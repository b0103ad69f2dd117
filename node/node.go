package node

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/config"
	"github.com/postern/postern/iceapi"
	"github.com/postern/postern/internal/certwatch"
	"github.com/postern/postern/relay"
)

// Options say what to run and how it talks to the outside.
type Options struct {
	// Settings are the resolved settings (config.Resolve).
	Settings config.Values
	// Log receives the node's logs.
	Log *slog.Logger
	// Stdout receives the iceServers JSON when the secret was generated
	// here; nothing else.
	Stdout io.Writer
	// Reload says when to reload and how to read the settings again.
	Reload Reload
	// Version is Postern's version (the admin API, the startup log);
	// Software the SOFTWARE attribute (RFC 8489 §14.14).
	Version, Software string
	// Extras are started once the relay serves, in order, before the node
	// says it serves; each one's stop runs when Run returns, in reverse
	// order. An error stops the node. (A feature with a listener of its
	// own plugs in here, from the command, with one line.)
	Extras []Extra
}

// Extra starts something beside the relay; stop ends it.
type Extra func(ctx context.Context, srv *relay.Server, s config.Values, log *slog.Logger) (stop func(), err error)

// Reload tells Run when to reload and how to read the configuration.
type Reload struct {
	// Load reads the configuration again (the file, then the flags); nil
	// disables reloading.
	Load func() (config.Values, error)
	// Signals delivers SIGHUP.
	Signals <-chan os.Signal
	// Requests asks for a reload and takes its result (tests); a nil
	// reply channel discards it.
	Requests <-chan chan<- error
}

// RESTCredentialTTL is how long the credential printed at start stays
// valid, and RESTCredentialUser its USER.
const (
	RESTCredentialTTL  = config.DefaultICETTL
	RESTCredentialUser = config.DefaultICEUser
)

// Run runs the node configured by o until ctx is cancelled, reloading when
// o.Reload says so.
func Run(ctx context.Context, o Options) error {
	s, log := o.Settings, o.Log
	creds, err := loadCredentials(s)
	if err != nil {
		return err
	}
	secrets := creds.secrets
	// With nothing configured nobody could allocate; rather than refuse to
	// start, make a secret for this run and print a credential from it.
	generated := creds.none()
	if generated {
		secrets = []string{rand.Text()}
	}

	// lv holds what a reload may change, starting with the credentials
	// (with one nonce key for the whole run), and the credentials API.
	lv, err := newLive(s, creds, secrets, generated, log)
	if err != nil {
		return err
	}
	// [cluster] before the relay is built: the fleet's nonce key and
	// secrets go into the authenticator, its node choice into the
	// credentials API (cluster.go); nil when off.
	fleet, err := startCluster(ctx, s, lv, o.Version, log)
	if err != nil {
		return err
	}
	defer fleet.stop()

	cert, err := loadCertificate(s)
	if err != nil {
		return err
	}

	// Bound before the relay starts, so that a busy port fails the start.
	api, err := listenAPI(config.APIOf(s), log)
	if err != nil {
		return err
	}
	defer api.Close()

	acme, err := acmeConfig(config.ACMEOf(s))
	if err != nil {
		return err
	}
	allow, deny := config.Peers(s)
	relayConfig := relay.Config{
		Auth:     lv.auth,
		Policy:   auth.NewPeerPolicy(allow, deny),
		TLSCert:  cert,
		ACME:     acme,
		Software: o.Software,
		Logger:   log,
		Fleet:    fleet.relayFleet(),
	}
	config.Apply(config.Settings(), s, &relayConfig)
	apiHandler, err := serveSelftest(s, lv, &relayConfig, lv) // [selftest] (selftest.go)
	if err != nil {
		return err
	}
	stopUsage, err := startUsage(s, &relayConfig, fleet, log) // [usage] (usage.go)
	if err != nil {
		return err
	}
	defer stopUsage() // after srv.Wait below: the shutdown's records too
	srv, err := relay.New(relayConfig)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	api.UseCertificates(srv.GetCertificate)
	// The admin listener comes up first, so /readyz can say "starting".
	adminAddr, stopAdmin, err := startAdmin(ctx, config.AdminOf(s), srv, fleet.adminFleet(), o.Version, log)
	if err != nil {
		return err
	}
	defer stopAdmin()
	// The relay runs until ctx ends, or until an extra fails to start.
	relayCtx, stopRelay := context.WithCancel(ctx)
	defer stopRelay()
	if err := srv.Start(drainContext(relayCtx, srv, config.Get(config.Settings(), s, "drain.timeout").(time.Duration), log)); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	external := discoveredExternal(s, srv)
	for _, start := range o.Extras {
		stop, err := start(ctx, srv, s, log)
		if err != nil {
			stopRelay()
			_ = srv.Wait()
			return err
		}
		defer stop()
	}
	// The certificate files are watched before the node says it serves,
	// so that a renewal from then on is seen.
	if certFile, keyFile := config.TLSFiles(s); certFile != "" {
		watchDone, err := certwatch.Start(ctx, lv.certChanged, log, certFile, keyFile)
		if err != nil {
			log.Warn("certificate renewals will need a SIGHUP", "err", err)
		} else {
			defer func() { <-watchDone }()
		}
	}

	bound := srv.Addrs()
	addrs := make([]string, 0, len(bound))
	for _, b := range bound {
		addrs = append(addrs, b.Kind.String()+"://"+b.Addr.String())
	}
	// The credentials API answers before the node says it serves.
	lv.attach(srv, external)
	fleet.start(ctx, srv, s, external, adminAddr)
	apiDone := api.Serve(ctx, apiHandler)
	log.Info("postern serving", startupSummary(s, relayConfig, creds, srv, addrs, len(secrets), generated, adminAddr, o.Version)...)
	notifySystemd(ctx, log)

	if generated {
		if err := printICEServers(o.Stdout, bound, s, external, secrets[0]); err != nil {
			// The server runs fine without the printout: say why it is missing.
			log.Warn("cannot print iceServers", "err", err)
		} else {
			log.Warn("no users or secrets configured: generated a secret for this run only; "+
				"the iceServers JSON on stdout holds a credential valid for 24h. "+
				"Configure auth.secrets or auth.users for lasting credentials",
				"expires", time.Now().Add(RESTCredentialTTL).Format(time.RFC3339))
		}
	}

	// Until ctx is cancelled: answer the credentials API and reload on
	// SIGHUP.
	lv.run(ctx, o.Reload)
	<-apiDone

	// Wait returns once ctx is cancelled (SIGINT, SIGTERM) and every
	// listener, connection and allocation is closed: a graceful stop.
	if err := srv.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("relay: %w", err)
	}
	return nil
}

// credentials are the users, keys and secrets a configuration puts in
// force (the users file read).
type credentials struct {
	users   map[string]string
	keys    map[string][]byte
	secrets []string
}

func loadCredentials(s config.Values) (credentials, error) {
	users, keys, err := config.Users(s)
	if err != nil {
		return credentials{}, err
	}
	return credentials{users: users, keys: keys, secrets: config.Secrets(s)}, nil
}

// none reports whether nothing is configured, so nobody could allocate.
func (c credentials) none() bool { return len(c.users) == 0 && len(c.keys) == 0 && len(c.secrets) == 0 }

// printICEServers writes one line of iceServers JSON for the bound
// listeners, with a REST credential minted from secret.
func printICEServers(w io.Writer, bound []relay.BoundListener, s config.Values, external netip.Addr, secret string) error {
	urls, err := AdvertisedURLs(bound, s, external)
	if err != nil {
		return err
	}
	b, err := iceapi.MintJSON(urls, secret, RESTCredentialUser, RESTCredentialTTL, time.Now())
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(w, "%s\n", b); err != nil {
		return fmt.Errorf("writing iceServers: %w", err)
	}
	return nil
}

// AdvertisedURLs returns the URLs of the bound listeners as clients dial
// them: with ice_servers.host when set (else the ACME certificate's
// domain), else with the address iceapi.HostPolicy picks. external is the
// advertised address discovered at start when s names none.
func AdvertisedURLs(bound []relay.BoundListener, s config.Values, external netip.Addr) ([]string, error) {
	host := config.ICEOf(s).Host
	if a := config.ACMEOf(s); host == "" && len(a.Domains) > 0 {
		// turns: URLs must name what the ACME certificate is for.
		host = a.Domains[0]
	}
	ext := config.AdvertisedHost(s)
	if !ext.IsValid() {
		ext = external
	}
	relay4, relay6 := config.RelayIPs(s)
	urls, err := iceapi.BoundURLs(bound, host, iceapi.HostPolicy{External: ext, Relay: relay4, Relay6: relay6,
		Primary: relay.PrimaryIP, Primary6: relay.PrimaryIP6})
	if err != nil {
		return nil, WithExternalIPHint(err)
	}
	return urls, nil
}

// WithExternalIPHint adds to an iceapi.NoAddressError the flag that fixes
// it.
func WithExternalIPHint(err error) error {
	var noAddr *iceapi.NoAddressError
	switch {
	case !errors.As(err, &noAddr):
		return err
	case noAddr.Err == nil:
		return fmt.Errorf("%w: set --external-ip", err)
	}
	return fmt.Errorf("%w (set --external-ip)", err)
}

// listenAPI binds the credentials API's address (iceapi.Server), or
// returns nil when the API is off. Over HTTPS it serves the relay's
// certificate (UseCertificates); config.Resolve has already refused HTTPS
// without one and plain HTTP off loopback.
func listenAPI(a config.API, log *slog.Logger) (*iceapi.Server, error) {
	if a.Listen == "" {
		return nil, nil
	}
	s, err := iceapi.Listen(a.Addr, a.Plain, log)
	if err != nil {
		return nil, fmt.Errorf("credentials_api.listen (--credentials-api) %s: %w: choose a free port or stop the process holding it", a.Listen, err)
	}
	return s, nil
}

// loadCertificate reads the certificate files s configures, or returns nil
// when it configures none (self-signed or ACME).
func loadCertificate(s config.Values) (*tls.Certificate, error) {
	certFile, keyFile := config.TLSFiles(s)
	if certFile == "" {
		return nil, nil
	}
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls.cert (--tls-cert) / tls.key (--tls-key): %w", err)
	}
	return &c, nil
}

// acmeConfig returns the relay's ACME configuration, reading the CA root
// file and resolving the storage directory; nil when ACME is off.
func acmeConfig(a config.ACME) (*relay.ACMEConfig, error) {
	if len(a.Domains) == 0 {
		return nil, nil
	}
	storage := a.Storage
	if storage == "" {
		var err error
		if storage, err = defaultACMEStorage(); err != nil {
			return nil, fmt.Errorf("tls.acme_storage (--acme-storage): %w", err)
		}
	}
	if err := os.MkdirAll(storage, 0o700); err != nil {
		return nil, fmt.Errorf("tls.acme_storage (--acme-storage): %w: create it, writable by the postern user only", err)
	}
	conf := &relay.ACMEConfig{Domains: a.Domains, CA: a.CA, Email: a.Email, Storage: storage}
	if a.CARoot != "" {
		pem, err := os.ReadFile(a.CARoot)
		if err != nil {
			return nil, fmt.Errorf("tls.acme_ca_root (--acme-ca-root): %w", err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.acme_ca_root (--acme-ca-root) %s: no PEM certificate in the file", a.CARoot)
		}
	}
	return conf, nil
}

// defaultACMEStorage is where ACME state lives when tls.acme_storage is
// empty: systemd's StateDirectory, else the XDG data directory.
func defaultACMEStorage() (string, error) {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" {
		// systemd may list several, separated by colons: use the first.
		return filepath.Join(strings.Split(d, ":")[0], "acme"), nil
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "postern", "acme"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no home directory to keep ACME state in: %w (set acme_storage)", err)
	}
	return filepath.Join(home, ".local", "share", "postern", "acme"), nil
}
