#!/usr/bin/env python3
"""Generate bench/sentences.txt: 512 varied English sentences for the embedding benchmark.

Deterministic (fixed seed, no network, no datasets): templates + word lists.
Mix: short phrases, questions, product reviews, support tickets, news-like
lines and long technical paragraphs; lengths spread from 3 to 60 words.

    python3 bench/make_sentences.py            # writes bench/sentences.txt
"""

import os
import random
import sys

SEED = 20240917
COUNT = 512
MIN_WORDS, MAX_WORDS = 3, 60

PRODUCTS = ["wireless headphones", "coffee grinder", "standing desk", "electric toothbrush",
            "running shoes", "laptop stand", "air purifier", "mechanical keyboard",
            "rice cooker", "backpack", "smart watch", "desk lamp", "blender",
            "phone case", "office chair", "water bottle", "robot vacuum", "monitor",
            "e-reader", "tent", "cast iron pan", "bluetooth speaker", "webcam"]
POS_ADJ = ["excellent", "sturdy", "comfortable", "reliable", "quiet", "beautiful",
           "well made", "fast", "intuitive", "lightweight", "great value"]
NEG_ADJ = ["flimsy", "noisy", "overpriced", "disappointing", "slow", "uncomfortable",
           "poorly designed", "fragile", "confusing", "unreliable"]
FEATURES = ["battery life", "build quality", "customer service", "packaging",
            "setup process", "sound quality", "instructions", "price", "design",
            "charging cable", "app", "warranty", "delivery time", "noise level"]
DURATIONS = ["two days", "a week", "three weeks", "a month", "six months", "a year",
             "a couple of hours", "ten minutes"]
PEOPLE = ["my wife", "my son", "my roommate", "our team", "my parents", "a friend",
          "my manager", "the kids"]

SERVICES = ["account", "subscription", "invoice", "password", "two-factor login",
            "order", "refund", "shipping label", "API key", "mobile app",
            "dashboard", "export", "billing address", "team workspace", "email alerts"]
PROBLEMS = ["keeps failing with a timeout", "shows a blank page",
            "returns error 500", "was charged twice", "never arrived",
            "is stuck in pending", "does not sync across devices",
            "logs me out every few minutes", "rejects my card",
            "crashes on startup", "shows the wrong currency", "is missing two items"]
SINCE = ["since yesterday", "since the last update", "for three days now",
         "since this morning", "after I changed my email", "intermittently all week"]
ASKS = ["Can you please look into this?", "Please advise.", "How do I fix this?",
        "I need this resolved before Friday.", "Is there a known outage?",
        "Can I get a refund?", "Please escalate this ticket.", "Thanks in advance."]

Q_STARTS = ["How do I", "Can I", "Is it possible to", "What is the best way to",
            "Why can't I", "Where can I", "How long does it take to", "Should I"]
Q_VERBS = ["reset my password", "change my billing plan", "export my data to CSV",
           "cancel my order", "add a new user", "update the firmware",
           "connect to the VPN", "return a damaged item", "enable dark mode",
           "merge two accounts", "track my package", "delete my account",
           "download an invoice", "rotate an API key", "share a folder"]
Q_TAILS = ["", " on Android", " from the web app", " without losing my history",
           " if I forgot my email", " on a shared computer", " before the trial ends"]
WH_QUESTIONS = ["What time does the store open on Sunday?", "Who won the match last night?",
                "Is the museum free on weekends?", "How far is the airport from downtown?",
                "What is the capital of Australia?", "Does this recipe work without eggs?",
                "Which train goes to the city center?", "How much water should I drink daily?",
                "When is the next full moon?", "Why is the sky blue?"]

ORGS = ["The central bank", "City council", "A regional airline", "The health ministry",
        "Researchers at a public university", "A major automaker", "The national weather service",
        "Local officials", "A mid-sized software company", "The football club",
        "Shareholders", "The port authority"]
NEWS_VERBS = ["announced", "confirmed", "postponed", "approved", "rejected", "reported",
              "unveiled", "warned of", "launched", "criticised"]
NEWS_OBJS = ["a new interest rate policy", "plans for a second runway",
             "record quarterly profits", "a recall of forty thousand vehicles",
             "heavy rainfall across the coast", "a partnership with a chip maker",
             "job cuts in its European offices", "a budget for public transport",
             "the results of a long-term clinical trial", "a strike by airport staff",
             "a new stadium project", "a sharp drop in exports"]
NEWS_WHEN = ["on Monday", "on Tuesday", "late on Wednesday", "on Thursday", "this week",
             "earlier today", "over the weekend", "after months of talks"]
NEWS_EXTRA = ["citing rising costs", "despite strong opposition",
              "according to a statement", "as markets reacted cautiously",
              "in a surprise move", "following an internal review",
              "amid growing public pressure"]

TECH_SUBJ = ["The scheduler", "Each worker thread", "The storage engine", "The tokenizer",
             "The garbage collector", "The load balancer", "The inference runtime",
             "The query planner", "A write-ahead log", "The cache layer",
             "The embedding model", "The compiler backend", "The message broker"]
TECH_VERB = ["batches incoming requests", "allocates buffers from a shared arena",
             "splits the input into fixed-size chunks", "retries failed operations with exponential backoff",
             "memory-maps the model weights", "pins each partition to a single core",
             "normalises vectors before indexing them", "compacts segments in the background",
             "evicts the least recently used entries", "streams results back over gRPC",
             "validates every tensor shape at load time", "fuses adjacent matrix multiplications"]
TECH_WHY = ["to reduce tail latency", "so that throughput scales with the number of cores",
            "which keeps peak memory usage predictable", "to avoid lock contention on the hot path",
            "so that a crash never corrupts committed data", "which amortises the cost of kernel launches",
            "to keep cold start times under a second", "so results are reproducible across runs"]
TECH_CAVEAT = ["However, this assumes the input fits in memory.",
               "In practice the gains depend heavily on the batch size.",
               "Note that the default configuration disables this behaviour.",
               "Benchmarks on smaller machines show a more modest improvement.",
               "This trade-off increases complexity in the error handling code.",
               "As a result, configuration changes require a full restart.",
               "Profiling showed that tokenization, not inference, dominated the runtime.",
               "Padding to the longest sequence in a batch wastes work when lengths vary widely."]

SHORT = ["Thanks a lot!", "Order arrived late.", "Great product overall.", "Not worth it.",
         "Works as expected.", "Please call me back.", "Still waiting for support.",
         "Love this app.", "Terrible customer service.", "Shipping was fast.",
         "Meeting moved to Thursday.", "The build is green.", "Coffee is ready.",
         "Rain expected tomorrow.", "Password reset failed.", "Good value for money.",
         "Battery drains quickly.", "See you at noon.", "The deploy succeeded.",
         "Refund processed today."]


def words(s):
    return len(s.split())


def cap(s):
    return s[0].upper() + s[1:]


def short(r):
    s = r.choice(SHORT)
    if r.random() < 0.4:
        s = f"{cap(r.choice(PRODUCTS))} is {r.choice(POS_ADJ + NEG_ADJ)}."
    return s


def question(r):
    if r.random() < 0.3:
        return r.choice(WH_QUESTIONS)
    return f"{r.choice(Q_STARTS)} {r.choice(Q_VERBS)}{r.choice(Q_TAILS)}?"


def review_clause(r, product):
    kind = r.randrange(6)
    if kind == 0:
        return f"I bought this {product} {r.choice(DURATIONS)} ago and it has been {r.choice(POS_ADJ)} so far."
    if kind == 1:
        return f"The {r.choice(FEATURES)} is {r.choice(NEG_ADJ)}, which is a shame for the price."
    if kind == 2:
        return f"According to {r.choice(PEOPLE)}, who uses it every day, the {r.choice(FEATURES)} is {r.choice(POS_ADJ)}."
    if kind == 3:
        return f"Honestly the {r.choice(FEATURES)} could be better."
    if kind == 4:
        return f"After {r.choice(DURATIONS)} the {r.choice(FEATURES)} started to feel {r.choice(NEG_ADJ)}."
    return f"I would {'definitely' if r.random() < 0.5 else 'probably not'} recommend it to {r.choice(PEOPLE)}."


def review(r, target):
    product = r.choice(PRODUCTS)
    stars = r.randint(1, 5)
    parts = [f"{stars} star{'s' if stars > 1 else ''}:" if r.random() < 0.3 else ""]
    parts.append(review_clause(r, product))
    return grow(r, parts, target, lambda: review_clause(r, product))


def ticket_clause(r):
    kind = r.randrange(4)
    if kind == 0:
        return f"My {r.choice(SERVICES)} {r.choice(PROBLEMS)} {r.choice(SINCE)}."
    if kind == 1:
        return f"I already tried clearing the cache and reinstalling, but the {r.choice(SERVICES)} still {r.choice(PROBLEMS)}."
    if kind == 2:
        return f"Ticket #{r.randint(10000, 99999)} was closed without a fix."
    return r.choice(ASKS)


def ticket(r, target):
    parts = [f"Hi, my {r.choice(SERVICES)} {r.choice(PROBLEMS)} {r.choice(SINCE)}."]
    return grow(r, parts, target, lambda: ticket_clause(r))


def news(r, target):
    s = f"{r.choice(ORGS)} {r.choice(NEWS_VERBS)} {r.choice(NEWS_OBJS)} {r.choice(NEWS_WHEN)}"
    if r.random() < 0.6:
        s += f", {r.choice(NEWS_EXTRA)}"
    parts = [s + "."]
    return grow(r, parts, target, lambda: (
        f"{r.choice(ORGS)} {r.choice(NEWS_VERBS)} {r.choice(NEWS_OBJS)} {r.choice(NEWS_WHEN)}."))


def tech_clause(r):
    if r.random() < 0.3:
        return r.choice(TECH_CAVEAT)
    return f"{r.choice(TECH_SUBJ)} {r.choice(TECH_VERB)} {r.choice(TECH_WHY)}."


def tech(r, target):
    return grow(r, [tech_clause(r)], target, lambda: tech_clause(r))


def grow(r, parts, target, more):
    """Append clauses while below `target` words, never exceeding MAX_WORDS."""
    text = " ".join(p for p in parts if p)
    for _ in range(40):
        if words(text) >= target:
            break
        nxt = more()
        if words(text) + words(nxt) > MAX_WORDS:
            continue
        text = f"{text} {nxt}"
    return text


def generate():
    r = random.Random(SEED)
    # (generator, weight, (min_target, max_target))
    kinds = [
        (lambda t: short(r), 14, (3, 6)),
        (lambda t: question(r), 18, (5, 14)),
        (lambda t: review(r, t), 22, (6, 40)),
        (lambda t: ticket(r, t), 16, (8, 45)),
        (lambda t: news(r, t), 14, (8, 30)),
        (lambda t: tech(r, t), 16, (15, 60)),
    ]
    weights = [k[1] for k in kinds]
    out, seen = [], {}
    while len(out) < COUNT:
        gen, _, (lo, hi) = r.choices(kinds, weights=weights)[0]
        s = " ".join(gen(r.randint(lo, hi)).split())
        n = words(s)
        if n < MIN_WORDS or n > MAX_WORDS or s in seen:
            continue
        seen[s] = True
        out.append(s)
    return out


def main():
    lines = generate()
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sentences.txt")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")
    lens = sorted(words(s) for s in lines)
    buckets = {"3-8": 0, "9-20": 0, "21-40": 0, "41-60": 0}
    for n in lens:
        key = "3-8" if n <= 8 else "9-20" if n <= 20 else "21-40" if n <= 40 else "41-60"
        buckets[key] += 1
    print(f"wrote {path}: {len(lines)} sentences, words min {lens[0]} "
          f"median {lens[len(lens) // 2]} max {lens[-1]}, buckets {buckets}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
