package node

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"

	"github.com/postern/postern/config"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/selftest"
)

// The self-test page ([selftest], package selftest) in a node: with
// selftest.enabled it is what the tcp+tls and tls listeners show visitors
// that are not TURN when no [web] backend takes them (relay.WebConfig.Page),
// and it is on /test of the credentials API listener (selftest.Mount).
// Off, the listeners keep their short built-in text and nothing answers
// /test/credentials. config refuses it without a REST secret
// (relateSelftest).

// serveSelftest puts the self-test page into rc (the 443 listeners' page)
// when it is enabled and returns the handler of the credentials API
// listener: api itself, or api with the page mounted on /test. Minting
// reads the secret in force from lv at each request, so a SIGHUP that
// rotates auth.secrets rotates the self-test's too.
func serveSelftest(s config.Values, lv *live, rc *relay.Config, api http.Handler) (http.Handler, error) {
	cfg := config.Selftest(s)
	if !cfg.Enabled {
		return api, nil
	}
	cfg.SecretSource = func() (string, error) {
		m := lv.mint.Load()
		if m.secret == "" {
			if m.err != nil {
				return "", m.err
			}
			return "", errors.New("no REST secret in force")
		}
		return m.secret, nil
	}
	listeners, _ := config.Listeners(s)
	cfg.TURNPort, cfg.TURNSPort, cfg.AltPort = selftestPorts(listeners)
	h, err := selftest.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("selftest: %w", err)
	}
	if rc.Web.Backend == "" {
		rc.Web.Page = h
	} else {
		lv.log.Info("self-test page only on the credentials API's /test: the 443 listeners forward visitors to the web backend",
			"backend", rc.Web.Backend)
	}
	if config.APIOf(s).Listen == "" {
		return api, nil
	}
	return selftest.Mount(h, api), nil
}

// selftestPorts are the doors' ports of the listeners: the port of the
// first tcp+tls listener is the HTTPS port, that of the first tls listener
// the turns: port, and that of the first udp or tcp listener on another
// port the TURN port. A port that none gives, or that is 0 (picked at
// bind), is left 0: probe's default (443, 5349, 3478).
func selftestPorts(listeners []relay.ListenSpec) (turnPort, turnsPort, altPort int) {
	port := func(l relay.ListenSpec) int {
		_, p, err := net.SplitHostPort(l.Addr)
		if err != nil {
			return 0
		}
		n, _ := strconv.Atoi(p)
		return n
	}
	for _, l := range listeners {
		switch p := port(l); {
		case l.Kind == relay.TCPTLS && altPort == 0:
			altPort = p
		case l.Kind == relay.TLS && turnsPort == 0:
			turnsPort = p
		}
	}
	for _, l := range listeners {
		if p := port(l); (l.Kind == relay.UDP || l.Kind == relay.TCP) && p != altPort && turnPort == 0 {
			turnPort = p
		}
	}
	return turnPort, turnsPort, altPort
}
