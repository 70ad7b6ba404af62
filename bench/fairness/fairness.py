#!/usr/bin/env python3
"""Fair-scheduling benchmark driver (bench/fairness/run.sh runs it; docs/generation.md,
"Scheduling"). Against a running `llmos serve` with two keys (tenants `light` and `heavy`):

  1. idle: the light tenant's single stream alone, RUNS times in turn;
  2. loaded: the heavy tenant keeps STREAMS concurrent streams busy (each thread sends one
     streamed completion after another, max_tokens HEAVY_TOKENS), and once every heavy
     stream has produced a token the light tenant's single stream runs RUNS times in turn.

Every request is greedy on a prompt SmolLM2 continues without end ("1, 2, 3, …, 12, " as
token ids), so each light stream generates exactly TOKENS tokens (checked). Per light run:
TTFT = request sent → first content chunk; tokens/s = (tokens − 1) / (last − first chunk).
Prints one JSON object: the mean of each phase, every run, the heavy tenant's tokens/s while
the light one ran, and the server's per-tenant metrics at the end.
"""

import argparse
import http.client
import json
import threading
import time
import urllib.parse


def prompt_ids():
    ids = []
    for k in range(1, 13):
        ids += [32 + int(d) for d in str(k)] + [28, 216]
    return ids


def stream(url, key, model, tokens, stop=None):
    """One streamed completion; returns t0, first, end, tokens, finish."""
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=900)
    body = json.dumps({"model": model, "prompt": prompt_ids(), "max_tokens": tokens,
                       "temperature": 0, "stream": True,
                       "stream_options": {"include_usage": True}})
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", body,
                 {"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
    first = finish = usage = None
    chunks = 0
    while True:
        line = resp.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data: "):
            continue
        if line[6:] == b"[DONE]":
            break
        ev = json.loads(line[6:])
        if "error" in ev:
            raise RuntimeError(str(ev["error"]))
        for c in ev.get("choices") or []:
            if c.get("text"):
                chunks += 1
                if first is None:
                    first = time.perf_counter()
            if c.get("finish_reason"):
                finish = c["finish_reason"]
        if ev.get("usage"):
            usage = ev["usage"]
        if stop is not None and stop.is_set():
            break  # closing the connection cancels the sequence
    end = time.perf_counter()
    conn.close()
    n = usage["completion_tokens"] if usage else chunks
    return {"t0": t0, "first": first, "end": end, "tokens": n, "finish": finish}


def light_runs(a):
    runs = []
    for _ in range(a.runs):
        r = stream(a.url, a.light_key, a.model, a.tokens)
        if r["tokens"] != a.tokens or r["finish"] != "length":
            raise RuntimeError(f"the light stream generated {r['tokens']} tokens ({r['finish']}), not {a.tokens}")
        runs.append({"ttft_ms": 1000 * (r["first"] - r["t0"]),
                     "tps": (r["tokens"] - 1) / (r["end"] - r["first"])})
    return {"ttft_ms": sum(x["ttft_ms"] for x in runs) / len(runs),
            "tps": sum(x["tps"] for x in runs) / len(runs), "runs": runs}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--light-key", required=True)
    p.add_argument("--heavy-key", required=True)
    p.add_argument("--model", default="smollm2")
    p.add_argument("--streams", type=int, default=16)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--heavy-tokens", type=int, default=64)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()

    idle = light_runs(a)

    stop = threading.Event()
    started = threading.Semaphore(0)
    heavy_tokens = [0] * a.streams
    errors = []

    def heavy(i):
        first = True
        try:
            while not stop.is_set():
                r = stream(a.url, a.heavy_key, a.model, a.heavy_tokens, stop)
                heavy_tokens[i] += r["tokens"]
                if first:
                    first = False
                    started.release()
        except Exception as e:  # reported, not lost in a thread
            errors.append(f"{type(e).__name__}: {e}")
            started.release()

    threads = [threading.Thread(target=heavy, args=(i,), daemon=True) for i in range(a.streams)]
    for t in threads:
        t.start()
    # Every heavy stream has finished one request: the flood is established (both
    # schedulers have had all 16 streams in the system).
    for _ in range(a.streams):
        started.acquire()
    if errors:
        raise SystemExit(json.dumps({"errors": errors}))
    before = sum(heavy_tokens)
    t0 = time.perf_counter()
    loaded = light_runs(a)
    wall = time.perf_counter() - t0
    heavy_tps = (sum(heavy_tokens) - before) / wall  # completed heavy requests only
    stop.set()
    u = urllib.parse.urlparse(a.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {a.light_key}"})
    metrics = [l for l in conn.getresponse().read().decode().splitlines()
               if l.startswith(("llmos_tenant_generated_tokens_total", "llmos_tenant_time_to_first_token_seconds_count"))]
    print(json.dumps({"idle": idle, "loaded": loaded, "heavy_completed_tps_during_light": heavy_tps,
                      "loaded_wall_s": wall, "metrics": metrics}))


if __name__ == "__main__":
    main()
