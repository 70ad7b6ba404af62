#!/usr/bin/env python3
"""Generation benchmark driver (bench/generate/run.sh runs it; docs/generation.md §6c).

Subcommands, each printing one JSON object on stdout:

  llmos URL --streams N --tokens T --prompt IDS
      N concurrent streamed POST /v1/completions (greedy, max_tokens T, prompt as token ids,
      stream_options.include_usage) against a running `llmos serve`; per stream: time to the
      first content chunk (TTFT) and decode tokens/s = (tokens − 1) / (end − first chunk).
  ort MODEL.onnx --batch B --tokens T --prompt IDS --threads K [--repeat R]
      The loop a user writes with onnxruntime: prefill the prompt with an empty cache, then
      one step per token feeding every `present.*` back as `past_key_values.*` (NumPy arrays
      returned by the session and handed back), attention_mask grown with np.concatenate,
      greedy argmax. B > 1 runs B copies of the prompt as one batch (the naive batched loop).
      R repeats run one after the other (a user's single loop serving R requests in turn).
  recompute MODEL.onnx --tokens T --prompt IDS --threads K
      The no-cache bound: every token recomputes the whole sequence (empty past).
  bandwidth [--mib 1024]
      NumPy copy bandwidth: the best of 5 np.copyto of a MIB MiB float32 array.
  weights MODEL.onnx
      Bytes of the graph's initializers (the weights one decode step reads).
"""

import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse

import numpy as np


def ids_arg(s):
    return [int(x) for x in s.split(",") if x]


# --- llmos over HTTP -------------------------------------------------------------------


def one_stream(url, model, prompt, tokens, start, out, i):
    try:
        stream(url, model, prompt, tokens, start, out, i)
    except Exception as e:  # reported with the others, not lost in a thread
        out[i] = {"error": f"{type(e).__name__}: {e}"}


def stream(url, model, prompt, tokens, start, out, i):
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    body = json.dumps({
        "model": model, "prompt": prompt, "max_tokens": tokens, "temperature": 0,
        "stream": True, "stream_options": {"include_usage": True},
    })
    start.wait()
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        out[i] = {"error": f"HTTP {resp.status}: {resp.read()[:300]!r}"}
        return
    first = None
    usage = None
    finish = None
    chunks = 0
    while True:
        line = resp.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data: "):
            continue
        data = line[6:]
        if data == b"[DONE]":
            break
        ev = json.loads(data)
        if "error" in ev:
            out[i] = {"error": str(ev["error"])}
            return
        for c in ev.get("choices") or []:
            if c.get("text"):
                chunks += 1
                if first is None:
                    first = time.perf_counter()
            if c.get("finish_reason"):
                finish = c["finish_reason"]
        if ev.get("usage"):
            usage = ev["usage"]
    end = time.perf_counter()
    conn.close()
    n = usage["completion_tokens"] if usage else chunks
    out[i] = {"t0": t0, "first": first, "end": end, "tokens": n, "finish": finish}


def cmd_llmos(a):
    out = [None] * a.streams
    start = threading.Event()
    threads = [threading.Thread(target=one_stream,
                                args=(a.url, a.model, a.prompt, a.tokens, start, out, i))
               for i in range(a.streams)]
    for t in threads:
        t.start()
    start.set()
    for t in threads:
        t.join()
    errors = [o.get("error", "no result") if o else "no result" for o in out
              if o is None or "error" in o]
    if errors:
        print(json.dumps({"errors": errors}))
        sys.exit(1)
    begin = min(o["t0"] for o in out)
    finish = max(o["end"] for o in out)
    total = sum(o["tokens"] for o in out)
    ttft = [o["first"] - o["t0"] for o in out]
    decode = [(o["tokens"] - 1) / (o["end"] - o["first"]) for o in out]
    print(json.dumps({
        "streams": a.streams,
        "tokens_each": sorted({o["tokens"] for o in out}),
        "finish": sorted({o["finish"] for o in out}),
        "ttft_ms_mean": 1000 * sum(ttft) / len(ttft),
        "ttft_ms_max": 1000 * max(ttft),
        "decode_tps_per_stream_mean": sum(decode) / len(decode),
        "aggregate_tps": total / (finish - begin),
        "wall_s": finish - begin,
    }))


# --- the Python onnxruntime loop ------------------------------------------------------


def session(model, threads):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def cache_specs(sess):
    specs = []
    for i in sess.get_inputs():
        if i.name.startswith("past_key_values."):
            specs.append((i.name, "present." + i.name[len("past_key_values."):], i.shape))
    return specs


def user_loop(sess, specs, prompt, batch, tokens):
    """One request (or one naive batch): returns (ttft_s, decode_s, generated ids)."""
    t0 = time.perf_counter()
    n = len(prompt)
    ids = np.array([prompt] * batch, dtype=np.int64)
    mask = np.ones((batch, n), dtype=np.int64)
    feed = {
        "input_ids": ids, "attention_mask": mask,
        "position_ids": np.tile(np.arange(n, dtype=np.int64), (batch, 1)),
    }
    for past, _, shape in specs:
        feed[past] = np.zeros((batch, shape[1], 0, shape[3]), dtype=np.float32)
    names = ["logits"] + [p for _, p, _ in specs]
    outs = sess.run(names, feed)
    nxt = outs[0][:, -1, :].argmax(-1)
    t_first = time.perf_counter()
    generated = [nxt]
    pos = n
    for _ in range(tokens - 1):
        mask = np.concatenate([mask, np.ones((batch, 1), dtype=np.int64)], axis=1)
        feed = {
            "input_ids": nxt.reshape(batch, 1).astype(np.int64), "attention_mask": mask,
            "position_ids": np.full((batch, 1), pos, dtype=np.int64),
        }
        for (past, _, _), v in zip(specs, outs[1:]):
            feed[past] = v
        outs = sess.run(names, feed)
        nxt = outs[0][:, -1, :].argmax(-1)
        generated.append(nxt)
        pos += 1
    t_end = time.perf_counter()
    return t_first - t0, t_end - t_first, np.stack(generated, axis=1)


def cmd_ort(a):
    sess = session(a.model, a.threads)
    specs = cache_specs(sess)
    user_loop(sess, specs, a.prompt, a.batch, 4)  # warm-up
    ttft, dec = [], []
    t0 = time.perf_counter()
    for _ in range(a.repeat):
        f, d, gen = user_loop(sess, specs, a.prompt, a.batch, a.tokens)
        ttft.append(f)
        dec.append(d)
    wall = time.perf_counter() - t0
    print(json.dumps({
        "batch": a.batch, "repeat": a.repeat,
        "ttft_ms_mean": 1000 * sum(ttft) / len(ttft),
        "decode_tps_per_stream_mean": sum((a.tokens - 1) / d for d in dec) / len(dec),
        "aggregate_tps": a.batch * a.repeat * a.tokens / wall,
        "wall_s": wall,
        "eos_in_output": bool((gen == 2).any()),
        "first_ids": gen[0, :12].tolist(),
    }))


def cmd_recompute(a):
    sess = session(a.model, a.threads)
    specs = cache_specs(sess)
    seq = list(a.prompt)
    names = ["logits"]
    t0 = time.perf_counter()
    for _ in range(a.tokens):
        n = len(seq)
        feed = {
            "input_ids": np.array([seq], dtype=np.int64),
            "attention_mask": np.ones((1, n), dtype=np.int64),
            "position_ids": np.arange(n, dtype=np.int64).reshape(1, n),
        }
        for past, _, shape in specs:
            feed[past] = np.zeros((1, shape[1], 0, shape[3]), dtype=np.float32)
        logits = sess.run(names, feed)[0]
        seq.append(int(logits[0, -1].argmax()))
    wall = time.perf_counter() - t0
    print(json.dumps({"tokens": a.tokens, "tps": a.tokens / wall, "wall_s": wall,
                      "first_ids": seq[len(a.prompt):len(a.prompt) + 12]}))


def cmd_bandwidth(a):
    n = a.mib * 1024 * 1024 // 4
    src = np.ones(n, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = min(timed_copy(dst, src) for _ in range(5))
    print(json.dumps({"bytes": src.nbytes, "copy_gb_s": src.nbytes / best / 1e9}))


def timed_copy(dst, src):
    t = time.perf_counter()
    np.copyto(dst, src)
    return time.perf_counter() - t


def cmd_weights(a):
    import onnx
    m = onnx.load(a.model, load_external_data=False)
    total = embd = 0
    head = None
    for t in m.graph.initializer:
        size = len(t.raw_data) if t.raw_data else onnx.numpy_helper.to_array(t).nbytes
        total += size
        if t.name.startswith("token_embd."):  # the importer's 8-bit embedding blocks
            embd += size
            if t.name == "token_embd.weight.q":  # [vocab, blocks, 32]
                head = t.dims[0] * t.dims[1] * t.dims[2] * 4
    # As run: the embedding Gather reads one row per token, while the tied lm head is those
    # blocks constant-folded to f32 at session load (docs: BENCHMARKS.md, the GGUF import)
    # and read whole every step.
    as_run = total - embd + head if head else total
    print(json.dumps({"initializers": len(m.graph.initializer), "bytes": total,
                      "as_run_bytes": as_run}))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("llmos")
    s.add_argument("url")
    s.add_argument("--model", default="smollm2")
    s.add_argument("--streams", type=int, required=True)
    s.add_argument("--tokens", type=int, required=True)
    s.add_argument("--prompt", type=ids_arg, required=True)
    for name in ("ort", "recompute"):
        s = sub.add_parser(name)
        s.add_argument("model")
        s.add_argument("--tokens", type=int, required=True)
        s.add_argument("--prompt", type=ids_arg, required=True)
        s.add_argument("--threads", type=int, required=True)
        if name == "ort":
            s.add_argument("--batch", type=int, default=1)
            s.add_argument("--repeat", type=int, default=1)
    s = sub.add_parser("bandwidth")
    s.add_argument("--mib", type=int, default=1024)
    s = sub.add_parser("weights")
    s.add_argument("model")
    a = p.parse_args()
    {"llmos": cmd_llmos, "ort": cmd_ort, "recompute": cmd_recompute,
     "bandwidth": cmd_bandwidth, "weights": cmd_weights}[a.cmd](a)


if __name__ == "__main__":
    main()
