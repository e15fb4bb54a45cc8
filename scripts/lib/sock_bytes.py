#!/usr/bin/env python3
"""Bytes a process received from and sent to a TCP port, from the kernel's per-socket counters
(`ss -tinp`: tcp_info bytes_received and bytes_acked, which count payload, not headers).
Prints one line: "RX TX SOCKETS", summed over the process's established connections to PORT.
A connection closed since the last call takes its bytes with it, so a caller that differences
two calls counts only what open connections carried.

usage: sock_bytes.py PID PORT
"""
import re
import subprocess
import sys


def main():
    pid, port = sys.argv[1], sys.argv[2]
    out = subprocess.run(
        ["ss", "-tinpH", "state", "established", f"( dport = :{port} )"],
        check=True, capture_output=True, text=True,
    ).stdout
    rx = tx = sockets = 0
    mine = False
    for line in out.splitlines():
        if not line.startswith((" ", "\t")):
            # A socket line; its tcp_info follows on the indented line(s).
            mine = re.search(rf"pid={pid},", line) is not None
            sockets += mine
            continue
        if not mine:
            continue
        m = re.search(r"\bbytes_received:(\d+)", line)
        rx += int(m[1]) if m else 0
        m = re.search(r"\bbytes_acked:(\d+)", line)
        tx += int(m[1]) if m else 0
    print(rx, tx, sockets)


if __name__ == "__main__":
    main()
