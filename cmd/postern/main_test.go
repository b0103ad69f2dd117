package main

import (
	"os"
	"strings"
	"testing"
)

// TestDocListsEverySubcommand: the package comment (doc.go) shows a usage
// line for every subcommand of the root command, so a new one cannot be
// left out of it.
func TestDocListsEverySubcommand(t *testing.T) {
	b, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, c := range newApp().Commands {
		if !strings.Contains(doc, "//\tpostern "+c.Name+" ") {
			t.Errorf("doc.go has no usage line for `postern %s`", c.Name)
		}
	}
}
