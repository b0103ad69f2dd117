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
//   - Errors name the key and the flag: "web.quic_backend (--web-quic-backend): ...".
//   - README's flag table and config.toml.example document every
//     declaration with its default, and document no undeclared key of a
//     declared family (TestDocsMatchDeclarations).
//
// Migration: declared here so far are the tables [web] (but turn_hosts, a
// list), [limits], [drain], [log] and [selftest], realm, relay.ports and
// auth.nonce_lifetime (the one that a reload changes); the other settings
// are still cmd/postern's Config struct, which hands the declared ones over
// through Config.Declared. A setting checked against another one says so
// in Relate (limits.default_lifetime against limits.max_lifetime).
//
// How to add a setting:
//  1. Append a Setting to Settings: Key, Flag, Kind, Default, Usage, Category.
//  2. Give it Check (validation) and Set (where it goes in relay.Config).
//  3. Set Restart unless the running server can take a new value on SIGHUP.
//  4. Add its row to README's flag table and "# key = default" to config.toml.example.
//  5. go test ./config/ ./cmd/postern/: the docs test names anything missing.
package config
