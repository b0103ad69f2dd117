package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/postern/postern/cluster"
	"github.com/postern/postern/config"
	"github.com/postern/postern/iceapi"
)

// ServeFleetAPI is "postern api": the fleet's credentials API as a
// process of its own, with no relay listeners (cluster.Node.Watch,
// cluster.Node.NewAPI). It reads the registry and the fleet's secrets
// from [cluster] redis, never registers itself (it is not a node: never
// handed out, never counted), and answers POST /v1/ice-servers with the
// best node for the caller, /healthz and /readyz, on [credentials_api]
// listen, until ctx ends. listenFlag names the command's flag that
// overrides the listen address, for messages.
func ServeFleetAPI(ctx context.Context, s config.Values, listenFlag string, log *slog.Logger) error {
	cfg, err := config.ClusterOf(s)
	if err != nil {
		return err
	}
	if cfg == nil {
		return fmt.Errorf("cluster.redis is empty: postern api hands out the nodes of a fleet: set [cluster] redis to the fleet's Redis (redis://HOST:PORT)")
	}
	api := config.APIOf(s)
	if api.Listen == "" {
		return fmt.Errorf("credentials_api.listen is empty: give the API an address (--%s, or [credentials_api] listen) and api_keys", listenFlag)
	}
	certFile, _ := config.TLSFiles(s)
	if !api.Plain && certFile == "" {
		return fmt.Errorf("credentials_api.listen %q is HTTPS: postern api needs tls.cert and tls.key (it obtains no ACME certificate), "+
			"or serve http://127.0.0.1:PORT behind your TLS reverse proxy", api.Listen)
	}
	cfg.Logger = log
	cfg.Node = "api:" + cfg.Node // in logs only: the API process never registers
	n, err := cluster.New(*cfg)
	if err != nil {
		return err
	}
	defer n.Close()
	ice := config.ICEOf(s)
	secrets := config.Secrets(s)
	h, err := n.NewAPI(iceapi.Config{
		Keys:         api.Keys,
		DefaultUser:  ice.User,
		DefaultTTL:   ice.TTL,
		MaxTTL:       api.MaxTTL,
		AllowOrigins: api.Origins,
		Logger:       log,
	}, secrets)
	if err != nil {
		return err
	}
	srv, err := listenAPI(api, log)
	if err != nil {
		return err
	}
	if !api.Plain {
		cert, err := loadCertificate(s)
		if err != nil {
			srv.Close()
			return err
		}
		srv.UseCertificates(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil })
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { n.Watch(ctx) })
	log.Info("postern api: the fleet's credentials API", "redis_node", cfg.Node, "secrets_in_file", len(secrets))
	<-srv.Serve(ctx, h)
	if ctx.Err() == nil {
		return errors.New("the credentials API stopped (the log says why)")
	}
	return nil
}
