package auth

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestParseUser(t *testing.T) {
	tests := []struct {
		in, user, pass string
		wantErr        string
	}{
		{"alice:secret", "alice", "secret", ""},
		{"alice:se:cr:et", "alice", "se:cr:et", ""},
		{"alice: spaced ", "alice", " spaced ", ""},
		{"alice:0xnot-a-key", "alice", "0xnot-a-key", ""},
		{"alice", "", "", "no ':'"},
		{":secret", "", "", "empty user name"},
		{"alice:", "", "", "empty password"},
		{"", "", "", "no ':'"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			user, pass, err := ParseUser(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseUser(%q): err = %v, want %q", tt.in, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "secret") {
					t.Fatalf("error %q reveals the password", err)
				}
				return
			}
			if err != nil || user != tt.user || pass != tt.pass {
				t.Fatalf("ParseUser(%q) = (%q, %q, %v), want (%q, %q)", tt.in, user, pass, err, tt.user, tt.pass)
			}
		})
	}
}

func TestParseUserEntry(t *testing.T) {
	hexKey := "0x5D41402ABC4B2A76B9719D911017C592"
	tests := []struct {
		in      string
		user    string
		pass    string
		key     string // hex; "" for none
		wantErr string
	}{
		{"bob:pw", "bob", "pw", "", ""},
		{"bob:0x" + strings.ToLower(hexKey[2:]), "bob", "", "5d41402abc4b2a76b9719d911017c592", ""},
		{"bob:" + hexKey, "bob", "", "5d41402abc4b2a76b9719d911017c592", ""},
		{"bob:0x" + strings.Repeat("0", 31), "", "", "", "31 hex digits"},
		{"bob:0x" + strings.Repeat("0", 33), "", "", "", "33 hex digits"},
		{"bob:0x" + strings.Repeat("g", 32), "", "", "", "not hexadecimal"},
		{"bob:0x", "", "", "", "0 hex digits"},
		{"bob:0X" + strings.Repeat("0", 32), "bob", "0X" + strings.Repeat("0", 32), "", ""},
		{"bob", "", "", "", "no ':'"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			user, pass, k, err := ParseUserEntry(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || user != tt.user || pass != tt.pass || hex.EncodeToString(k) != tt.key {
				t.Fatalf("ParseUserEntry(%q) = (%q, %q, %x, %v)", tt.in, user, pass, k, err)
			}
		})
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users.txt")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadUsersFile(t *testing.T) {
	bobKey := LongTermKey("bob", testRealm, "bobpass")
	content := "\xef\xbb\xbf# Postern users\r\n" +
		"\n" +
		"alice:correct horse battery staple\r\n" +
		"   # indented comment\n" +
		"  carol :  pass:with:colons#and-hash  \n" +
		"bob:0x" + hex.EncodeToString(bobKey) + "\n" +
		"\t\n" +
		"dave:x" // no final newline
	users, keys, err := LoadUsersFile(writeFile(t, content))
	if err != nil {
		t.Fatal(err)
	}
	wantUsers := map[string]string{
		"alice": "correct horse battery staple",
		"carol": "pass:with:colons#and-hash",
		"dave":  "x",
	}
	if len(users) != len(wantUsers) {
		t.Fatalf("users = %q, want %q", users, wantUsers)
	}
	for u, p := range wantUsers {
		if users[u] != p {
			t.Errorf("users[%q] = %q, want %q", u, users[u], p)
		}
	}
	if len(keys) != 1 || !bytes.Equal(keys["bob"], bobKey) {
		t.Fatalf("keys = %x, want bob: %x", keys, bobKey)
	}

	// The loaded users authenticate.
	a := newAuth(t, Config{Users: users, Keys: keys})
	for user, pass := range map[string]string{"alice": "correct horse battery staple", "bob": "bobpass", "carol": "pass:with:colons#and-hash"} {
		if _, err := a.Verify(request(t, user, testRealm, pass)); err != nil {
			t.Errorf("Verify(%s): %v", user, err)
		}
	}

	t.Run("empty file", func(t *testing.T) {
		users, keys, err := LoadUsersFile(writeFile(t, "# nothing\n\n"))
		if err != nil || users == nil || keys == nil || len(users)+len(keys) != 0 {
			t.Fatalf("= %v, %v, %v; want two empty maps", users, keys, err)
		}
	})
}

func TestLoadUsersFileErrors(t *testing.T) {
	tests := []struct {
		name, content string
		line          int
		want          string
	}{
		{"no colon", "alice:pw\nbob\n", 2, "want NAME:PASSWORD"},
		{"empty name", "# c\n\n :pw\n", 3, "empty user name"},
		{"empty password", "alice:   \n", 1, "empty password"},
		{"short key", "bob:0x1234\n", 1, "4 hex digits after 0x, want 32"},
		{"bad key", "bob:0x" + strings.Repeat("z", 32) + "\n", 1, "not hexadecimal"},
		{"duplicate", "alice:a\nbob:b\nalice:c\n", 3, `user "alice" already defined on line 1`},
		{"duplicate across forms", "bob:b\nbob:0x" + strings.Repeat("0", 32) + "\n", 2, "already defined on line 1"},
		{"line too long", "alice:a\nbob:" + strings.Repeat("x", 70000) + "\n", 2, "line longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.content)
			_, _, err := LoadUsersFile(path)
			if err == nil {
				t.Fatal("no error")
			}
			wantLoc := path + ":" + strconv.Itoa(tt.line) + ":"
			if !strings.Contains(err.Error(), wantLoc) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %q, want it to contain %q and %q", err, wantLoc, tt.want)
			}
		})
	}

	t.Run("missing file", func(t *testing.T) {
		_, _, err := LoadUsersFile(filepath.Join(t.TempDir(), "nope"))
		if err == nil || !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("err = %v, want a wrapped not-exist error", err)
		}
	})

	t.Run("password not in error", func(t *testing.T) {
		_, _, err := LoadUsersFile(writeFile(t, "alice:hunter2\nalice:hunter3\n"))
		if err == nil || strings.Contains(err.Error(), "hunter") {
			t.Fatalf("err = %v", err)
		}
	})
}
