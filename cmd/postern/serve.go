package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v3"

	"github.com/postern/postern/config"
	"github.com/postern/postern/node"
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

// serveAction reads the configuration and runs the node.
func serveAction(ctx context.Context, cmd *cli.Command) error {
	if cmd.NArg() > 0 {
		return fmt.Errorf("serve takes no arguments, got %q (did you forget -- before a flag?)", cmd.Args().First())
	}
	s, err := loadSettings(cmd)
	if err != nil {
		return err
	}
	log := newLogger(cmd.Root().ErrWriter, config.LogLevel(s), config.LogFormat(s))
	if addr := cmd.String(node.FlagPprof); addr != "" {
		_, stopPprof, err := node.StartPprof(ctx, addr, log)
		if err != nil {
			return err
		}
		defer stopPprof()
	}
	// SIGHUP reloads (package node). Registered before serving, so that it
	// never kills a running server.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	return node.Run(ctx, nodeOptions(s, log, cmd.Root().Writer,
		node.Reload{Load: func() (config.Values, error) { return loadSettings(cmd) }, Signals: hup}))
}

// nodeOptions are the options of node.Run for settings s.
func nodeOptions(s config.Values, log *slog.Logger, stdout io.Writer, r node.Reload) node.Options {
	return node.Options{Settings: s, Log: log, Stdout: stdout, Reload: r, Version: version(), Software: software(), Extras: extras()}
}

// extras are what serve starts beside the relay (node.Extra), one line
// each.
func extras() []node.Extra {
	return nil
}

// newLogger returns a slog logger writing to w in format "text" or "json".
func newLogger(w io.Writer, level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
