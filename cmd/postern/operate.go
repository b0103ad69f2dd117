package main

import (
	"context"
	"log/slog"
	"strconv"
	"strings"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/postern/postern/admin"
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
func startAdmin(ctx context.Context, a adminSettings, srv *relay.Server, fleet admin.Fleet, log *slog.Logger) (addr string, stop func(), err error) {
	if a.listen == "" {
		log.Info("admin listener off (admin.listen = \"off\")")
		return "off", func() {}, nil
	}
	adm, err := admin.New(admin.Config{Addr: a.listen, Token: a.token, Relay: srv, Version: version(), Fleet: fleet, Logger: log})
	if err != nil {
		return "", nil, err
	}
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	if err := adm.Start(actx); err != nil {
		cancel()
		if a.explicit {
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

// withDiscoveredExternal returns s with externalIP set to an address
// discovered at start (relay.external_ip = "auto"), for the ICE server URLs
// printed at start, when the configuration named none.
func withDiscoveredExternal(s settings, srv *relay.Server) settings {
	if !s.externalAuto || s.externalIP.IsValid() {
		return s
	}
	for _, ra := range srv.RelayAddresses() {
		if ra.Advertised != ra.Relay {
			s.externalIP = ra.Advertised
			break
		}
	}
	return s
}

// startupSummary returns the attributes of the one "postern serving" line:
// listeners, relay range, relay and advertised addresses, auth modes and
// the admin listener. It names credentials by count only.
func startupSummary(s settings, srv *relay.Server, listeners []string, secrets int, generated bool, adminAddr string) []any {
	var relays []string
	for _, ra := range srv.RelayAddresses() {
		if ra.Advertised == ra.Relay {
			relays = append(relays, ra.Relay.String())
		} else {
			relays = append(relays, ra.Relay.String()+"->"+ra.Advertised.String())
		}
	}
	var modes []string
	if n := len(s.users); n > 0 {
		modes = append(modes, "static-users:"+strconv.Itoa(n))
	}
	if n := len(s.keys); n > 0 {
		modes = append(modes, "key-users:"+strconv.Itoa(n))
	}
	switch {
	case generated:
		modes = append(modes, "rest-generated-secret")
	case secrets > 0:
		modes = append(modes, "rest-secrets:"+strconv.Itoa(secrets))
	}
	return []any{
		"version", version(), "realm", s.realm(),
		"listeners", strings.Join(listeners, " "),
		"relay_ports", s.relayPorts().String(),
		"relay_addresses", strings.Join(relays, " "),
		"auth", strings.Join(modes, " "),
		"users", len(s.users) + len(s.keys), "secrets", secrets,
		"admin", adminAddr,
	}
}
