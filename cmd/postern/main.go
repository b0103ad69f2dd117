package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/urfave/cli/v3"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal starts the graceful shutdown, restore the
	// default handling so a second one kills the process at once.
	context.AfterFunc(ctx, stop)
	err := newApp().Run(ctx, os.Args)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "postern:", err)
		os.Exit(1)
	}
}

// newApp returns the root command. Each call builds fresh flags, so tests
// can run it many times.
func newApp() *cli.Command {
	return &cli.Command{
		Name:     "postern",
		Usage:    "a STUN/TURN relay server for WebRTC",
		Version:  version(),
		Commands: []*cli.Command{serveCommand(), credentialCommand(), iceServersCommand(), checkConfigCommand(), sessionsCommand(), kickCommand(), drainCommand(), probeCommand(), apiCommand()},
		// Errors are returned to main, which prints them once and exits;
		// the library must neither exit nor print them itself.
		ExitErrHandler: func(context.Context, *cli.Command, error) {},
		OnUsageError:   usageError,
	}
}

// usageError turns a command-line parsing error into a one-line error that
// points at --help, instead of printing the whole help text.
func usageError(_ context.Context, cmd *cli.Command, err error, _ bool) error {
	return fmt.Errorf("%w (see %s --help)", err, cmd.FullName())
}

// devVersion is reported when the binary carries no module version (built
// inside the repository).
const devVersion = "0.1.0-dev"

// version returns the module version stamped by the go command, or
// devVersion.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			return strings.TrimPrefix(v, "v")
		}
	}
	return devVersion
}

// software is the SOFTWARE attribute of every response to an authenticated
// request (RFC 8489 §14.14).
func software() string { return "postern/" + version() }
