package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Server resource use, read from /proc the way top and ps do.

// procUsage is a process's CPU time so far and its memory.
type procUsage struct {
	cpuSeconds float64 // user + system, all threads, including exited ones
	rssKiB     int64   // VmRSS: resident now
	hwmKiB     int64   // VmHWM: peak resident
}

// readProc reads /proc/PID/stat and /proc/PID/status (pid "self" works).
func readProc(pid string, clkTck float64) (procUsage, error) {
	var u procUsage
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return u, fmt.Errorf("read server CPU time: %w (is -pid the server's process id?)", err)
	}
	u.cpuSeconds, err = parseStatCPU(stat, clkTck)
	if err != nil {
		return u, err
	}
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return u, fmt.Errorf("read server memory: %w", err)
	}
	u.rssKiB, u.hwmKiB = parseStatusMem(status)
	return u, nil
}

// parseStatCPU returns utime+stime (fields 14 and 15 of proc(5) stat) in
// seconds. The command name (field 2) may hold spaces and parentheses, so
// fields are counted after its last ')'.
func parseStatCPU(stat []byte, clkTck float64) (float64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc stat format: no ')'")
	}
	fields := strings.Fields(string(stat[i+1:]))
	// fields[0] is field 3 (state); utime is field 14, stime field 15.
	if len(fields) < 13 {
		return 0, fmt.Errorf("unexpected /proc stat format: %d fields", len(fields))
	}
	utime, err1 := strconv.ParseUint(fields[11], 10, 64)
	stime, err2 := strconv.ParseUint(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("unexpected /proc stat format: utime %q stime %q", fields[11], fields[12])
	}
	return float64(utime+stime) / clkTck, nil
}

// parseStatusMem returns VmRSS and VmHWM in KiB (0 when absent).
func parseStatusMem(status []byte) (rss, hwm int64) {
	for line := range strings.SplitSeq(string(status), "\n") {
		name, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *int64
		switch name {
		case "VmRSS":
			dst = &rss
		case "VmHWM":
			dst = &hwm
		default:
			continue
		}
		f := strings.Fields(val)
		if len(f) >= 1 {
			*dst, _ = strconv.ParseInt(f[0], 10, 64)
		}
	}
	return rss, hwm
}

// clockTicks returns the kernel's USER_HZ from the auxiliary vector
// (AT_CLKTCK), which is what /proc stat times are counted in; 100 if unknown.
func clockTicks() float64 {
	const atClkTck = 17
	b, err := os.ReadFile("/proc/self/auxv")
	if err == nil {
		for ; len(b) >= 16; b = b[16:] {
			if binary.NativeEndian.Uint64(b) == atClkTck {
				if v := binary.NativeEndian.Uint64(b[8:]); v > 0 {
					return float64(v)
				}
			}
		}
	}
	return 100
}

// readMachineCPU is the busy CPU time of the whole machine, all CPUs, in
// seconds (/proc/stat). On loopback the kernel's receive work for a
// datagram runs in the sender's context, and a server that relays in the
// kernel (eBPF) does its work there: only the machine's total sees every
// server's whole cost.
// With cpu >= 0 it is that CPU's alone.
func readMachineCPU(clkTck float64, cpu int) (float64, error) {
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseMachineCPU(stat, clkTck, cpu)
}

// parseMachineCPU returns the busy time of /proc/stat's "cpu" line (or
// with cpu >= 0 of the "cpuN" line): user, nice, system, irq, softirq and
// steal (idle and iowait left out; guest time is inside user).
func parseMachineCPU(stat []byte, clkTck float64, cpu int) (float64, error) {
	name := "cpu"
	if cpu >= 0 {
		name = "cpu" + strconv.Itoa(cpu)
	}
	var f []string
	for line := range strings.SplitSeq(string(stat), "\n") {
		if g := strings.Fields(line); len(g) > 0 && g[0] == name {
			f = g
			break
		}
	}
	if len(f) < 9 {
		return 0, fmt.Errorf("unexpected /proc/stat format: no %q line of 9 fields or more", name)
	}
	var busy uint64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("unexpected /proc/stat field %q: %w", f[i], err)
		}
		busy += v
	}
	return float64(busy) / clkTck, nil
}
