package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/urfave/cli/v3"

	"github.com/postern/postern/config"
)

// checkConfigCommand returns "check-config": validate a configuration file
// as serve would, reporting each problem with its file, line and key.
func checkConfigCommand() *cli.Command {
	return &cli.Command{
		Name:      "check-config",
		Usage:     "validate a configuration file and say precisely what is wrong (key, line, why)",
		UsageText: "postern check-config FILE\npostern check-config --config FILE",
		Description: "Reads FILE as `postern serve --config FILE` would, with no flags: TOML syntax, unknown keys,\n" +
			"types, every value, the users file and the TLS certificate. Problems are printed one per line,\n" +
			"FILE:LINE: KEY ...: why and what to write instead, and the command exits 1; a valid file prints\n" +
			"FILE: OK and a summary. Warnings (a certificate close to expiry, a file others can read) do not\n" +
			"fail the check.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: flagConfig, Aliases: []string{"c"}, TakesFile: true, Usage: "the TOML `FILE` to check"},
		},
		OnUsageError: usageError,
		Action:       checkConfigAction,
	}
}

func checkConfigAction(_ context.Context, cmd *cli.Command) error {
	path := cmd.String(flagConfig)
	switch {
	case cmd.NArg() > 1 || (cmd.NArg() == 1 && path != ""):
		return errors.New("check-config checks one file: postern check-config FILE")
	case cmd.NArg() == 1:
		path = cmd.Args().First()
	case path == "":
		return errors.New("which file? postern check-config FILE")
	}
	r := config.Check(path)
	root := cmd.Root()
	for _, w := range r.Warnings {
		fmt.Fprintf(root.ErrWriter, "%s: warning: %s\n", path, w)
	}
	for _, p := range r.Problems {
		fmt.Fprintln(root.ErrWriter, p)
	}
	if n := len(r.Problems); n > 0 {
		return fmt.Errorf("%s: %d problem%s: serve would refuse this file", path, n, map[bool]string{true: "s"}[n > 1])
	}
	_, err := fmt.Fprintf(root.Writer, "%s: OK: %s\n", path, r.Summary)
	return err
}
