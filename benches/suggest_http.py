"""`POST /v1/suggest` round trips against a running `sieve serve` (one keep-alive connection, one request at a
time): every keystroke (2nd character on) of the first three words of the abt-buy-products queries, ROUNDS
times each, median kept per string; prints p50/p99 over the strings, client time included.

    python3 benches/suggest_http.py HOST:PORT [ROUNDS] [QUERIES]
"""
import http.client, json, sys, time, statistics

addr, rounds, limit = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3, int(sys.argv[3]) if len(sys.argv) > 3 else 300
host, port = addr.split(":")
conn = http.client.HTTPConnection(host, int(port))
strings = []
for line in list(open("../shared/data/abt-buy-products/queries.jsonl"))[:limit]:
    words = " ".join(json.loads(line)["text"].split()[:3])
    strings += [words[:n] for n in range(2, len(words) + 1)]
med = []
for s in strings:
    body = json.dumps({"query": s, "limit": 5})
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        conn.request("POST", "/v1/suggest", body, {"content-type": "application/json"})
        r = conn.getresponse()
        r.read()
        assert r.status == 200, r.status
        times.append(time.perf_counter() - t)
    med.append(statistics.median(times))
med.sort()
p = lambda q: med[min(len(med) - 1, max(0, int(q * len(med) + 0.999999) - 1))] * 1e3
print(f"{len(strings)} strings x {rounds}: p50 {p(0.5):.3f} ms, p99 {p(0.99):.3f} ms, max {med[-1]*1e3:.3f} ms")
