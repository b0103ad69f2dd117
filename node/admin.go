package node

import (
	"context"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/postern/postern/admin"
	"github.com/postern/postern/config"
	"github.com/postern/postern/relay"
)

// startAdmin starts the admin listener for srv, unless it is off, and
// returns its bound address ("off" when there is none). It runs until the
// returned stop is called, independently of ctx, so that /readyz reports
// "stopping" while the relay shuts down; serve calls stop once the relay
// has stopped. A default address that cannot bind (another Postern on the
// host, a test run) is logged and skipped; a configured one is an error.
//
// fleet, when not nil, is the fleet the node belongs to ([cluster]).
func startAdmin(ctx context.Context, a config.Admin, srv *relay.Server, fleet admin.Fleet, version string, log *slog.Logger) (addr string, stop func(), err error) {
	if a.Listen == "" {
		log.Info("admin listener off (admin.listen = \"off\")")
		return "off", func() {}, nil
	}
	adm, err := admin.New(admin.Config{Addr: a.Listen, Token: a.Token, Relay: srv, Version: version, Fleet: fleet, Logger: log})
	if err != nil {
		return "", nil, err
	}
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	if err := adm.Start(actx); err != nil {
		cancel()
		if a.Explicit {
			return "", nil, err
		}
		log.Warn("default admin listener skipped: no metrics, health or sessions API this run", "err", err)
		return "off", func() {}, nil
	}
	return adm.Addr().String(), func() {
		cancel()
		<-adm.Done()
	}, nil
}

// notifySystemd tells systemd (Type=notify) that the server is ready, and
// that it is stopping once ctx is done. Outside systemd (no NOTIFY_SOCKET)
// it does nothing.
func notifySystemd(ctx context.Context, log *slog.Logger) {
	notify := func(state string) {
		if _, err := daemon.SdNotify(false, state); err != nil {
			log.Warn("cannot notify systemd", "state", state, "err", err)
		}
	}
	notify(daemon.SdNotifyReady)
	context.AfterFunc(ctx, func() { notify(daemon.SdNotifyStopping) })
}

// discoveredExternal returns the address discovered at start
// (relay.external_ip = "auto"), for the ICE server URLs, when the
// configuration names none; else the invalid Addr.
func discoveredExternal(s config.Values, srv *relay.Server) netip.Addr {
	if !config.ExternalAuto(s) || config.AdvertisedHost(s).IsValid() {
		return netip.Addr{}
	}
	for _, ra := range srv.RelayAddresses() {
		if ra.Advertised != ra.Relay {
			return ra.Advertised
		}
	}
	return netip.Addr{}
}

// startupSummary returns the attributes of the one "postern serving" line:
// listeners, relay range, relay and advertised addresses, auth modes and
// the admin listener. It names credentials by count only.
func startupSummary(s config.Values, rc relay.Config, c credentials, srv *relay.Server, listeners []string, secrets int, generated bool, adminAddr, version string) []any {
	var relays []string
	for _, ra := range srv.RelayAddresses() {
		if ra.Advertised == ra.Relay {
			relays = append(relays, ra.Relay.String())
		} else {
			relays = append(relays, ra.Relay.String()+"->"+ra.Advertised.String())
		}
	}
	var modes []string
	if n := len(c.users); n > 0 {
		modes = append(modes, "static-users:"+strconv.Itoa(n))
	}
	if n := len(c.keys); n > 0 {
		modes = append(modes, "key-users:"+strconv.Itoa(n))
	}
	switch {
	case generated:
		modes = append(modes, "rest-generated-secret")
	case secrets > 0:
		modes = append(modes, "rest-secrets:"+strconv.Itoa(secrets))
	}
	return []any{
		"version", version, "realm", config.Realm(s),
		"listeners", strings.Join(listeners, " "),
		"relay_ports", rc.RelayPorts.String(),
		"relay_addresses", strings.Join(relays, " "),
		"auth", strings.Join(modes, " "),
		"users", len(c.users) + len(c.keys), "secrets", secrets,
		"admin", adminAddr,
	}
}
