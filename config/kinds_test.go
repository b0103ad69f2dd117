package config

import (
	"strings"
	"testing"
)

// TestKinds: a list and a table go through the flags (repeatable,
// replacing the file's), TOML (strict about types), Resolve (compared by
// content with the default) and reload (RestartChanged) without ==.
func TestKinds(t *testing.T) {
	decls := []Setting{
		{Key: "t.hosts", Flag: "host", Kind: KindStrings, Default: []string{"a"}, ZeroIsDefault: true, Restart: true, Usage: "host"},
		{Key: "t.users", Flag: "user", Kind: KindMap, Default: map[string]string(nil), Placeholder: "NAME:PASSWORD", Usage: "user NAME:PASSWORD"},
	}
	v := parse(t, decls, "--host", "b", "--host", "d", "--user", "al:p:w")
	if !Equal(v["t.hosts"], []string{"b", "d"}) || !Equal(v["t.users"], map[string]string{"al": "p:w"}) {
		t.Errorf("flags = %v", v)
	}
	f, err := decode(t, decls, "[t]\nhosts = [\"x\"]\nusers = { bo = \"q\" }\n")
	if err != nil || !Equal(f["t.hosts"], []string{"x"}) || !Equal(f["t.users"], map[string]string{"bo": "q"}) {
		t.Errorf("TOML = %v, %v", f, err)
	}
	for text, want := range map[string]string{
		"[t]\nhosts = \"x\"\n":      "t.hosts: wrong type: write an array of strings",
		"[t]\nhosts = [1]\n":        "t.hosts: wrong type: write an array of strings",
		"[t]\nusers = { bo = 1 }\n": "t.users: wrong type: write a table",
		"[t]\nusers = [\"bo:q\"]\n": "t.users: wrong type: write a table",
	} {
		if _, err := decode(t, decls, text); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q: %v, want %q", text, err, want)
		}
	}
	// The default written out, or an empty list, is the default.
	for _, given := range []Values{{"t.hosts": []string{"a"}}, {"t.hosts": []string{}}} {
		if r, err := Resolve(decls, given); err != nil || r != nil {
			t.Errorf("Resolve(%v) = %v, %v, want the defaults", given, r, err)
		}
	}
	if got := RestartChanged(decls, Values{"t.hosts": []string{"b"}}, Values{"t.hosts": []string{"b"}}); len(got) != 0 {
		t.Errorf("equal lists: %v", got)
	}
	if got := RestartChanged(decls, nil, Values{"t.hosts": []string{"b"}}); len(got) != 1 {
		t.Errorf("changed list: %v", got)
	}
}
