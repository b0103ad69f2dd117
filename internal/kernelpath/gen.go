package kernelpath

// The program is compiled ahead of time and committed (kernelpath_bpfel.o
// and its loader), so that building Postern needs no clang; regenerating
// needs Debian's clang, llvm and libbpf-dev.
//go:generate go tool bpf2go -tags linux -target bpfel -type to_peer_key -type to_peer_val -type to_client_key -type to_client_val -type to_peer6_key -type to_peer6_val -type to_client6_key -type to_client6_val -type count kernelpath kernelpath.c -- -I/usr/include/x86_64-linux-gnu -Wall
