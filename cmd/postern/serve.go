package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/config"
	"github.com/postern/postern/internal/certwatch"
	"github.com/postern/postern/relay"
)

// serveCommand returns the "serve" subcommand: run the relay until SIGINT or
// SIGTERM.
func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the STUN/TURN relay until SIGINT or SIGTERM",
		Description: "Reads the optional TOML file given with --config, then the flags (a flag wins over the file;\n" +
			"a repeatable flag replaces the file's list). With no users and no secrets configured, a random\n" +
			"secret is generated and a ready iceServers JSON with a 24 h credential is printed on stdout.",
		Flags: configFlags(),
		// Passwords and secrets may contain commas: one value per flag use.
		DisableSliceFlagSeparator: true,
		OnUsageError:              usageError,
		Action:                    serveAction,
	}
}

// serveAction reads the configuration and runs the server.
func serveAction(ctx context.Context, cmd *cli.Command) error {
	if cmd.NArg() > 0 {
		return fmt.Errorf("serve takes no arguments, got %q (did you forget -- before a flag?)", cmd.Args().First())
	}
	s, err := loadSettings(cmd)
	if err != nil {
		return err
	}
	log := newLogger(cmd.Root().ErrWriter, config.LogLevel(s.declared), config.LogFormat(s.declared))
	if addr := cmd.String(flagPprof); addr != "" {
		_, stopPprof, err := startPprof(ctx, addr, log)
		if err != nil {
			return err
		}
		defer stopPprof()
	}
	// SIGHUP reloads credentials (reload.go). Registered before serving, so
	// that it never kills a running server.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reloads := reloadSource{load: func() (settings, error) { return loadSettings(cmd) }, signals: hup}
	return serve(ctx, s, log, cmd.Root().Writer, reloads)
}

// loadSettings reads --config (if given), applies the flags over it and
// validates the result.
func loadSettings(cmd *cli.Command) (settings, error) {
	var c Config
	if path := cmd.String(flagConfig); path != "" {
		var err error
		if c, err = Load(path); err != nil {
			return settings{}, err
		}
	}
	if err := c.applyFlags(cmd); err != nil {
		return settings{}, err
	}
	return c.settings()
}

// newLogger returns a slog logger writing to w in format "text" or "json".
func newLogger(w io.Writer, level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve runs the relay configured by s until ctx is cancelled, reloading
// when reloads says so. stdout receives the iceServers JSON when the secret
// was generated here.
func serve(ctx context.Context, s settings, log *slog.Logger, stdout io.Writer, reloads reloadSource) error {
	secrets := s.secrets
	// With nothing configured nobody could allocate; rather than refuse to
	// start, make a secret for this run and print a credential from it.
	generated := len(s.users) == 0 && len(s.keys) == 0 && len(secrets) == 0
	if generated {
		secrets = []string{rand.Text()}
	}

	// lv holds what a reload may change, starting with the credentials
	// (with one nonce key for the whole run), and the credentials API.
	lv, err := newLive(s, secrets, generated, log)
	if err != nil {
		return err
	}
	fleet, err := startCluster(ctx, s, lv, log) // [cluster]: nil when off (cluster.go)
	if err != nil {
		return err
	}
	defer fleet.stop()
	authn := lv.auth

	cert, err := loadCertificate(s)
	if err != nil {
		return err
	}

	// Bound before the relay starts, so that a busy port fails the start.
	api, err := listenAPI(s.api, log)
	if err != nil {
		return err
	}
	defer api.Close()

	acme, err := s.port443.acmeConfig()
	if err != nil {
		return err
	}
	relayConfig := relay.Config{
		Listeners:          s.listeners,
		ListenersExplicit:  s.listenersExplicit,
		Auth:               authn,
		Policy:             auth.NewPeerPolicy(s.allowPeers, s.denyPeers),
		RelayIP:            s.relayIP,
		RelayIPs:           validAddrs(s.relayIP6),
		DefaultFamily:      s.defaultFamily,
		ExternalIP:         s.externalIPs,
		DiscoverExternalIP: s.stunDiscovery(),
		TLSCert:            cert,
		ACME:               acme,
		Web:                s.port443.web,
		ProxyProtocolFrom:  s.port443.proxyFrom,
		Software:           software(),
		Logger:             log,
		Fleet:              fleet.relayFleet(),
	}
	config.Apply(config.Settings(), s.declared, &relayConfig)
	apiHandler, err := serveSelftest(s, lv, &relayConfig, lv)
	if err != nil {
		return err
	}
	stopUsage, err := startUsage(s.declared, &relayConfig, fleet, log)
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
	adminAddr, stopAdmin, err := startAdmin(ctx, s.admin, srv, fleet.adminFleet(), log)
	if err != nil {
		return err
	}
	defer stopAdmin()
	if err := srv.Start(drainContext(ctx, srv, config.Get(config.Settings(), s.declared, "drain.timeout").(time.Duration), log)); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	s = withDiscoveredExternal(s, srv)

	bound := srv.Addrs()
	addrs := make([]string, 0, len(bound))
	for _, b := range bound {
		addrs = append(addrs, b.Kind.String()+"://"+b.Addr.String())
	}
	log.Info("postern serving", startupSummary(s, srv, addrs, len(secrets), generated, adminAddr)...)
	notifySystemd(ctx, log)

	if generated {
		if err := printICEServers(stdout, bound, s, secrets[0]); err != nil {
			// The server runs fine without the printout: say why it is missing.
			log.Warn("cannot print iceServers", "err", err)
		} else {
			log.Warn("no users or secrets configured: generated a secret for this run only; "+
				"the iceServers JSON on stdout holds a credential valid for 24h. "+
				"Configure auth.secrets or auth.users for lasting credentials",
				"expires", time.Now().Add(restCredentialTTL).Format(time.RFC3339))
		}
	}

	// Until ctx is cancelled: answer the credentials API and reload on
	// SIGHUP.
	lv.attach(srv, s)
	fleet.start(ctx, srv, s, adminAddr)
	if s.tlsCert != "" {
		go func() {
			if err := certwatch.Watch(ctx, lv.certChanged, log, s.tlsCert, s.tlsKey); err != nil {
				log.Warn("certificate renewals will need a SIGHUP", "err", err)
			}
		}()
	}
	apiDone := api.Serve(ctx, apiHandler)
	lv.run(ctx, reloads)
	<-apiDone

	// Wait returns once ctx is cancelled (SIGINT, SIGTERM) and every
	// listener, connection and allocation is closed: a graceful stop.
	if err := srv.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("relay: %w", err)
	}
	return nil
}

// printICEServers writes one line of iceServers JSON for the bound
// listeners, with a REST credential minted from secret.
func printICEServers(w io.Writer, bound []relay.BoundListener, s settings, secret string) error {
	urls, err := advertisedURLs(bound, s)
	if err != nil {
		return err
	}
	b, err := mintICEServers(urls, secret, restCredentialUser, restCredentialTTL, time.Now())
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(w, "%s\n", b); err != nil {
		return fmt.Errorf("writing iceServers: %w", err)
	}
	return nil
}

// validAddrs returns the valid addresses of ips.
func validAddrs(ips ...netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, ip := range ips {
		if ip.IsValid() {
			out = append(out, ip)
		}
	}
	return out
}
