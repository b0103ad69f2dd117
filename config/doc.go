// Package config declares Postern's settings: each one once, in Settings,
// with its TOML key, flag, default, help text, validation, whether a
// SIGHUP reload may change it, and a setter into relay.Config. The flags
// (Flags, FromFlags), the strict TOML decoding (FromTOML, Declared,
// KeysIn), validation for serve and check-config (Resolve), the relay's
// configuration (Apply) and reload (RestartChanged, TakeReloadable) are
// all computed from the declarations; nothing else lists the settings.
//
// Invariants:
//   - A Values holds only values that differ from their default, so the
//     defaults are the nil Values and two Values compare key by key.
//   - Errors name the key and the flag: "web.quic_backend (--web-quic-backend): ..."
//     (the key alone for a key without a flag), and never echo a password.
//   - Values compare with Equal (lists and tables by content), never ==.
//   - README's flag table and config.toml.example document every
//     declaration with its default, and document no undeclared key
//     (TestDocsMatchDeclarations).
//
// Every setting of the file is declared here; nothing else lists them.
// Settings that go into relay.Config have a Set; the others (credentials,
// peer lists, [tls] files and ACME, [ice_servers], [credentials_api],
// [admin], [selftest], [cluster], [usage]) are read by package node and
// the commands through typed getters (Users, Peers, TLSFiles, ACMEOf,
// ICEOf, APIOf, AdminOf, Realm, Selftest, ClusterOf, UsageConfig).
// A setting checked against another one says so in Relate
// (limits.default_lifetime against limits.max_lifetime, the credentials
// API against its keys and certificate). Reload is data: Restart marks
// what a SIGHUP cannot change, ReloadsWith what follows a restart-only
// setting (the API's keys follow its listen address); Load and Read are
// the strict decoder, Check is check-config.
//
// Kinds: string, bool, duration, int, float, a list of strings (TOML
// array; Decode may accept one string too, as relay.ip does; a repeatable
// flag replaces the file's list) and a table of strings ([auth] users;
// --user NAME:PASSWORD, repeatable).
//
// How to add a setting:
//  1. Append a Setting to Settings: Key, Flag (or none, for a key of the
//     file only), Kind, Default, Usage, Category.
//  2. Give it Check (validation) and Set (where it goes in relay.Config),
//     or a typed getter when another package reads it.
//  3. Set Restart unless the running server can take a new value on SIGHUP.
//  4. Add its row to README's flag table and "# key = default" to config.toml.example.
//  5. go test ./config/ ./cmd/postern/: the docs test names anything missing
//     (TestAddedDeclarationReachesEverything shows the whole path).
package config
