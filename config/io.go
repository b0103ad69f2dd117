package config

import "github.com/postern/postern/relay"

// ioSetting is [relay] io: how relay sockets are read (relay/io.go).
// io_uring batches the receives and the sends to clients of every
// allocation into one system call per batch instead of a wake-up and two
// calls per packet (BENCHMARKS.md, issue 14); auto falls back to epoll
// where the kernel lacks io_uring or forbids it
// (kernel.io_uring_disabled, container seccomp profiles). The default is
// epoll: io_uring costs less CPU per packet with many allocations at media
// rates, but with a few allocations flat out it measured no better, and
// epoll is the path every kernel and sandbox has (BENCHMARKS.md, issue 14).
func ioSetting() Setting {
	return Setting{
		Key: "relay.io", Flag: "relay-io", Kind: KindString, Default: relay.IOEpoll,
		Placeholder: "MODE", Category: CategoryRelay, Restart: true,
		Usage: "how relay sockets are read: epoll, io_uring, or auto (io_uring where the kernel allows it, else epoll)",
		Check: func(v any) error { return relay.CheckIO(v.(string)) },
		Set:   func(c *relay.Config, v any) { c.IO = v.(string) },
	}
}
