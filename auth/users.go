package auth

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// maxUsersLine bounds one line of a users file.
const maxUsersLine = 64 << 10

// ParseUser splits a NAME:PASSWORD value (the --user flag) at its first
// colon: the password may contain colons, the name may not. Neither may be
// empty. Nothing is trimmed. The password is returned as given; use
// ParseUserEntry to also accept coturn's NAME:0x<key> form. Errors never
// quote the password.
func ParseUser(s string) (user, password string, err error) {
	user, password, err = splitUser(s)
	if err != nil {
		return "", "", fmt.Errorf("auth: %w", err)
	}
	return user, password, nil
}

// ParseUserEntry parses NAME:PASSWORD like ParseUser, and also coturn's
// NAME:0x<32 hex digits> form, the long-term key MD5(NAME:realm:PASSWORD)
// as printed by `turnadmin -k`. Exactly one of password and key is set. A
// value starting with "0x" is always taken as a key, as coturn does, so a
// password cannot start with "0x".
func ParseUserEntry(s string) (user, password string, key []byte, err error) {
	user, password, key, err = parseEntry(s)
	if err != nil {
		return "", "", nil, fmt.Errorf("auth: %w", err)
	}
	return user, password, key, nil
}

// splitUser is ParseUser without the package prefix on errors.
func splitUser(s string) (user, password string, err error) {
	user, password, found := strings.Cut(s, ":")
	switch {
	case !found:
		return "", "", errors.New("no ':'; want NAME:PASSWORD")
	case user == "":
		return "", "", errors.New("empty user name; want NAME:PASSWORD")
	case password == "":
		return "", "", fmt.Errorf("user %q has an empty password; want NAME:PASSWORD", user)
	}
	return user, password, nil
}

// parseEntry is ParseUserEntry without the package prefix on errors.
func parseEntry(s string) (user, password string, key []byte, err error) {
	user, password, err = splitUser(s)
	if err != nil {
		return "", "", nil, err
	}
	hexKey, isKey := strings.CutPrefix(password, "0x")
	if !isKey {
		return user, password, nil, nil
	}
	const why = "a value starting with 0x is a key, MD5 of user:realm:password, as `turnadmin -k` prints it"
	if len(hexKey) != 2*KeySize {
		return "", "", nil, fmt.Errorf("user %q: key is %d hex digits after 0x, want %d (%s)",
			user, len(hexKey), 2*KeySize, why)
	}
	key, err = hex.DecodeString(hexKey)
	if err != nil {
		return "", "", nil, fmt.Errorf("user %q: key after 0x is not hexadecimal (%s)", user, why)
	}
	return user, "", key, nil
}

// usersLine parses one line of a users file. Surrounding whitespace is
// dropped, from the line and from both sides of the first colon; blank lines
// and lines starting with '#' are skipped (there are no trailing comments:
// '#' may be part of a password).
func usersLine(line string) (user, password string, key []byte, skip bool, err error) {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return "", "", nil, true, nil
	}
	name, value, found := strings.Cut(line, ":")
	if !found {
		return "", "", nil, false, errors.New("no ':'; want NAME:PASSWORD or NAME:0x<32 hex digits>")
	}
	user, password, key, err = parseEntry(strings.TrimSpace(name) + ":" + strings.TrimSpace(value))
	return user, password, key, false, err
}

// LoadUsersFile reads static users from path, one per line:
//
//	# comment
//	alice:correct horse battery staple
//	bob:0x5d41402abc4b2a76b9719d911017c592
//
// "NAME:PASSWORD" puts the password in users; "NAME:0x<32 hex digits>" puts
// the long-term key MD5(NAME:realm:PASSWORD) in keys, so the file holds no
// password (coturn's form; the key is bound to the realm). Whitespace around
// names and values is ignored; blank lines and lines starting with '#' are
// skipped. Errors name the file and line and say what to write instead; a
// name that appears twice is an error. Both maps are non-nil.
func LoadUsersFile(path string) (users map[string]string, keys map[string][]byte, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("auth: reading users file: %w", err)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 byte order mark
	users = make(map[string]string)
	keys = make(map[string][]byte)
	seen := make(map[string]int) // name → line of first definition

	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxUsersLine)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		user, password, key, skip, err := usersLine(sc.Text())
		if err != nil {
			return nil, nil, fmt.Errorf("auth: %s:%d: %w", path, lineNo, err)
		}
		if skip {
			continue
		}
		if first, dup := seen[user]; dup {
			return nil, nil, fmt.Errorf("auth: %s:%d: user %q already defined on line %d; keep one of them",
				path, lineNo, user, first)
		}
		seen[user] = lineNo
		if key != nil {
			keys[user] = key
		} else {
			users[user] = password
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, nil, fmt.Errorf("auth: %s:%d: line longer than %d bytes", path, lineNo+1, maxUsersLine)
		}
		return nil, nil, fmt.Errorf("auth: reading %s: %w", path, err)
	}
	return users, keys, nil
}

// UsersFileLine returns the users-file line that stores user's long-term key
// instead of the password: NAME:0x<hex of MD5(NAME:realm:PASSWORD)>, as
// `turnadmin -k` prints it and LoadUsersFile reads it. Check the name with
// CheckUsersFileName first: not every name survives a line.
func UsersFileLine(user, realm, password string) string {
	return user + ":0x" + hex.EncodeToString(LongTermKey(user, realm, password))
}

// CheckUsersFileName reports why name would not read back from a users-file
// line (LoadUsersFile), or nil: it must be non-empty, hold no ':' (the line
// splits at the first one), no surrounding blanks (they are trimmed), no
// control characters (one line), and not start with '#' (a comment).
func CheckUsersFileName(name string) error {
	switch {
	case name == "":
		return errors.New("a user name cannot be empty")
	case strings.Contains(name, ":"):
		return errors.New("a user name cannot contain ':' (the users file splits at the first one)")
	case strings.TrimSpace(name) != name:
		return errors.New("a user name cannot start or end with a blank (the users file trims them)")
	case name[0] == '#':
		return errors.New("a user name cannot start with '#' (the users file reads it as a comment)")
	case strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return errors.New("a user name cannot contain control characters")
	}
	return nil
}
