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

// kernelPathSetting is [relay] kernel_path: bound channels of UDP
// allocations relayed by an eBPF program in the kernel
// (internal/kernelpath). Off by default: it needs root (CAP_BPF and
// CAP_NET_ADMIN) and Linux 6.6, and relays IPv4 only.
func kernelPathSetting() Setting {
	return Setting{
		Key: "relay.kernel_path", Flag: "relay-kernel-path", Kind: KindString, Default: relay.KernelPathOff,
		Placeholder: "MODE", Category: CategoryRelay, Restart: true,
		Usage: "relay bound channels of UDP allocations in the kernel: off, or tc (an eBPF program at TCX ingress of every interface; needs root and Linux 6.6; IPv4)",
		Check: func(v any) error { return relay.CheckKernelPath(v.(string)) },
		Set:   func(c *relay.Config, v any) { c.KernelPath = v.(string) },
	}
}
