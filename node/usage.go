package node

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/postern/postern/config"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/usage"
)

// usageCloseTimeout bounds how long a stopping node waits to write the
// usage records still queued (the shutdown's final records among them).
const usageCloseTimeout = 10 * time.Second

// startUsage starts the usage records' writer when [usage] names a file
// or a Redis stream, or the node is in a fleet (whose Redis then gets the
// stream), and hooks it into rc; stop flushes and closes it, after the
// relay has stopped.
func startUsage(s config.Values, rc *relay.Config, fleet *fleetWiring, log *slog.Logger) (stop func(), err error) {
	cfg, ok := config.UsageConfig(s)
	if !ok && fleet != nil {
		// A fleet's billing reads one stream: its own Redis, unless
		// [usage] says otherwise.
		cfg.Redis, ok = config.Get(config.Settings(), s, "cluster.redis").(string), true
	}
	if !ok {
		return func() {}, nil
	}
	if cfg.File != "" && cfg.Redis != "" {
		log.Warn("usage.file is ignored: usage records go to usage.redis", "file", cfg.File)
		cfg.File = ""
	}
	// The node's name in every record: the fleet's name for it, else the
	// host name (a pod's name on Kubernetes).
	if fleet != nil {
		cfg.Node = fleet.name()
	} else {
		cfg.Node, _ = os.Hostname()
	}
	cfg.Logger = log
	w, err := usage.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("usage records: %w", err)
	}
	rc.Usage = w
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), usageCloseTimeout)
		defer cancel()
		if err := w.Close(ctx); err != nil {
			log.Warn("usage records lost at stop", "err", err)
		}
	}, nil
}
