package config

import (
	"strings"

	"github.com/postern/postern/relay"
)

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
// CAP_NET_ADMIN) and Linux 6.6, and what it relays
// passes the host's firewall (netfilter) by, which an operator should
// choose knowingly. auto loads it where it can and relays in user space
// where it cannot.
func kernelPathSetting() Setting {
	return Setting{
		Key: "relay.kernel_path", Flag: "relay-kernel-path", Kind: KindString, Default: relay.KernelPathOff,
		Placeholder: "MODE", Category: CategoryRelay, Restart: true,
		Usage: "relay bound channels of UDP allocations in the kernel: off, tc (an eBPF program at TCX ingress; needs root and Linux 6.6; fails to start without them), or auto (tc where it loads, else user space with a warning)",
		Check: func(v any) error { return relay.CheckKernelPath(v.(string)) },
		Set:   func(c *relay.Config, v any) { c.KernelPath = v.(string) },
	}
}

// kernelPathInterfacesSetting is [relay] kernel_path_interfaces: where the
// kernel path attaches. Every interface by default, including those that
// come up later.
func kernelPathInterfacesSetting() Setting {
	return Setting{
		Key: "relay.kernel_path_interfaces", Flag: "relay-kernel-path-interface", Kind: KindStrings, Default: []string(nil),
		DocDefault: "every interface", Placeholder: "NAME", Category: CategoryRelay, Restart: true,
		Usage: "an interface the kernel path attaches to (repeatable; default every interface that is up, and those that come up later)",
		Check: func(v any) error {
			for _, name := range v.([]string) {
				if name == "" || len(name) > 15 || strings.ContainsAny(name, "/ \t") {
					return valueErrorf("%q is not an interface name (up to 15 characters, no '/' or spaces; `ip link` lists them)", name)
				}
			}
			return nil
		},
		Set: func(c *relay.Config, v any) { c.KernelPathInterfaces = v.([]string) },
	}
}
