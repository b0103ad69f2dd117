package auth

import (
	"bytes"
	"strings"
	"testing"
)

// TestUsersFileLine: the line `postern credential hash` prints reads back
// from a users file as the key of that user, and no password.
func TestUsersFileLine(t *testing.T) {
	for _, tc := range []struct{ user, realm, password string }{
		{"alice", "postern", "wonderland"},
		{"bob", "turn.example.org", "pass: word # not a comment"},
	} {
		line := UsersFileLine(tc.user, tc.realm, tc.password)
		if !strings.HasPrefix(line, tc.user+":0x") || strings.Contains(line, tc.password) {
			t.Errorf("line %q: want %s:0x<key> without the password", line, tc.user)
		}
		users, keys, err := LoadUsersFile(writeFile(t, line+"\n"))
		if err != nil || len(users) != 0 || !bytes.Equal(keys[tc.user], LongTermKey(tc.user, tc.realm, tc.password)) {
			t.Errorf("users file %q: users %v keys %x err %v", line, users, keys, err)
		}
	}
}

// TestCheckUsersFileName: every name it accepts reads back unchanged from a
// users-file line; every name it refuses is refused with the reason.
func TestCheckUsersFileName(t *testing.T) {
	for _, name := range []string{"alice", "a.b-c_d@example.org", "x#y", "élise"} {
		if err := CheckUsersFileName(name); err != nil {
			t.Errorf("%q: %v", name, err)
			continue
		}
		_, keys, err := LoadUsersFile(writeFile(t, UsersFileLine(name, "r", "p")+"\n"))
		if _, ok := keys[name]; err != nil || !ok {
			t.Errorf("%q does not read back: %v %v", name, keys, err)
		}
	}
	for name, why := range map[string]string{
		"":       "empty",
		"a:b":    "':'",
		" a":     "blank",
		"a\t":    "blank",
		"#a":     "comment",
		"a\x00b": "control",
	} {
		if err := CheckUsersFileName(name); err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("%q: %v, want an error saying %q", name, err, why)
		}
	}
}
