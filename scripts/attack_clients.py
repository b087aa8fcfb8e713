#!/usr/bin/env python3
"""Slow and idle clients against minillm-serve while normal clients chat (loopback only, bounded).

  attack_clients.py BASE_URL --seconds S [--slow N] [--idle N] [--normal N] [--api-key KEY]

For S seconds: N slow clients each send a request's headers one byte every --slow-interval
seconds (reconnecting when the server cuts them off), N idle connections are held open (reopened
when closed), N normal clients send chat completions back to back, and /health is asked every
0.25 s. Prints one JSON line of figures; exits 1 when a normal request failed or /health took
longer than --health-limit seconds (or failed).
"""
import argparse
import http.client
import json
import socket
import sys
import threading
import time
import urllib.parse


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--slow", type=int, default=12)
    ap.add_argument("--slow-interval", type=float, default=2.0)
    ap.add_argument("--idle", type=int, default=80)
    ap.add_argument("--normal", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--health-limit", type=float, default=1.0)
    ap.add_argument("--api-key", default="")
    a = ap.parse_args()
    url = urllib.parse.urlparse(a.base)
    host, port = url.hostname, url.port
    if host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("loopback only: " + a.base)
    end = time.monotonic() + a.seconds
    lock = threading.Lock()
    stats = {"normal_ok": 0, "normal_failed": 0, "failures": [], "health_checks": 0, "health_failed": 0,
             "health_max_s": 0.0, "slow_cut_off": 0, "idle_reopened": 0}

    def count(key, n=1):
        with lock:
            stats[key] += n

    def slow_client():
        header = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                  "X-Padding: " + "x" * 4096 + "\r\n").encode()
        while time.monotonic() < end:
            try:
                with socket.create_connection((host, port), timeout=5) as s:
                    for i in range(len(header)):
                        if time.monotonic() >= end:
                            return
                        s.sendall(header[i:i + 1])
                        time.sleep(a.slow_interval)
            except OSError:
                count("slow_cut_off")
                time.sleep(0.1)

    def idle_client():
        while time.monotonic() < end:
            try:
                with socket.create_connection((host, port), timeout=5) as s:
                    s.settimeout(max(0.1, end - time.monotonic()))
                    s.recv(1)  # returns when the server closes it (keep-alive over) or refuses it (503)
                    count("idle_reopened")
            except socket.timeout:
                return
            except OSError:
                count("idle_reopened")
                time.sleep(0.1)

    headers = {"Content-Type": "application/json"}
    if a.api_key:
        headers["Authorization"] = "Bearer " + a.api_key

    def normal_client(i):
        body = json.dumps({"messages": [{"role": "user", "content": f"你好 {i}"}], "max_tokens": a.max_tokens})
        while time.monotonic() < end:
            try:
                c = http.client.HTTPConnection(host, port, timeout=120)
                c.request("POST", "/v1/chat/completions", body, headers)
                r = c.getresponse()
                data = r.read()
                c.close()
                if r.status == 200 and b'"chat.completion"' in data:
                    count("normal_ok")
                else:
                    raise RuntimeError(f"HTTP {r.status}: {data[:200]!r}")
            except Exception as e:  # any failure of a normal request is what this run looks for
                with lock:
                    stats["normal_failed"] += 1
                    stats["failures"].append(str(e)[:200])

    def health():
        while time.monotonic() < end:
            t0 = time.monotonic()
            ok = False
            try:
                c = http.client.HTTPConnection(host, port, timeout=10)
                c.request("GET", "/health")
                ok = c.getresponse().status == 200
                c.close()
            except Exception:
                ok = False
            took = time.monotonic() - t0
            with lock:
                stats["health_checks"] += 1
                stats["health_max_s"] = max(stats["health_max_s"], round(took, 3))
                if not ok:
                    stats["health_failed"] += 1
            time.sleep(0.25)

    threads = [threading.Thread(target=slow_client) for _ in range(a.slow)]
    threads += [threading.Thread(target=idle_client) for _ in range(a.idle)]
    for t in threads:
        t.start()
    time.sleep(min(1.0, a.seconds / 4))  # the attack is in place before the others start
    others = [threading.Thread(target=normal_client, args=(i,)) for i in range(a.normal)] + [threading.Thread(target=health)]
    for t in others:
        t.start()
    for t in threads + others:
        t.join(timeout=a.seconds + 180)
    stats["failures"] = stats["failures"][:5]
    print(json.dumps(stats))
    bad = stats["normal_failed"] > 0 or stats["normal_ok"] == 0 or stats["health_failed"] > 0 or \
        stats["health_max_s"] > a.health_limit
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
