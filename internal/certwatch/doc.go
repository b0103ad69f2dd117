// Package certwatch tells when certificate files have been renewed, so that
// a server can load them again without a restart or a SIGHUP.
//
// Invariants:
//
//   - One signal per burst of writes: the signal comes Quiet after the last
//     change to a watched file, so a chain and a key written one after the
//     other are read together; changes to other files in the same
//     directories are ignored.
//   - Sending never blocks: when a signal is already pending, another is
//     dropped (the reader reloads once for both).
//   - Watch holds its goroutine's resources (an inotify descriptor) only
//     until its context is done.
//   - The package reads no certificate: what a change means is the caller's
//     business (relay.Server.SetCertificate after loading the pair).
package certwatch
