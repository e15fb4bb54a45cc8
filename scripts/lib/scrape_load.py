#!/usr/bin/env python3
"""Scrapes URL back to back (PAUSE seconds between scrapes) for SECONDS, each on a new
connection as Prometheus does, and prints one line: scrapes, p50, p99 and max latency in ms,
the size of the last scrape in bytes, and failures. A bounded loop: it stops after SECONDS.

usage: scrape_load.py URL SECONDS [PAUSE]
"""
import sys
import time
import urllib.request


def main():
    url, seconds = sys.argv[1], float(sys.argv[2])
    pause = float(sys.argv[3]) if len(sys.argv) > 3 else 0.05
    lat, size, failed = [], 0, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                size = len(r.read())
            lat.append((time.monotonic() - t) * 1000)
        except Exception:  # counted: a failed scrape is a result, not a crash
            failed += 1
        time.sleep(pause)
    lat.sort()

    def q(f):
        return lat[min(len(lat) - 1, int(f * len(lat)))] if lat else float("nan")

    print(f"scrapes={len(lat)} p50_ms={q(0.5):.2f} p99_ms={q(0.99):.2f} "
          f"max_ms={(lat[-1] if lat else float('nan')):.2f} bytes={size} failed={failed}")


if __name__ == "__main__":
    main()
