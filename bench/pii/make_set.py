#!/usr/bin/env python3
"""Generate bench/pii/set.jsonl: the labelled set for anonymisation precision/recall.

Deterministic (fixed seed, no network, no datasets). How it is made:
- templates (English sentences: support tickets, letters, logs, payments) filled from
  lists of given names, surnames, cities, regions, countries, organisations, domains;
- numbers generated with their real check digits: card numbers (Visa, Mastercard, Amex
  prefixes) with a Luhn digit, IBANs (DE, GB, FR, NL, ES, IT) with ISO 13616 mod-97 check
  digits, IPv4/IPv6 addresses, phone numbers in international and US/UK/DE formats;
- negatives made from the same generators with a broken checksum (last card digit +1,
  IBAN check digits +1) or an impossible value (octet > 255, a five-part version string);
- hand-written hard negatives (order numbers, dates, versions, ISBN/EAN codes, times,
  amounts, handles) that look like personal data and are not.

Each line: {"id", "group", "text", "spans": [{"type","start","end","text"}]} with
character offsets (Python string indices), end exclusive. Gold types: PERSON (a person's
name, given name alone or with surname), LOC (city, region, country), ORG, EMAIL, PHONE,
CREDIT_CARD, IBAN, IP. Street, house number and postcode are not labelled (no gold type).

    python3 bench/pii/make_set.py            # writes bench/pii/set.jsonl
"""

import json
import os
import random
import re

SEED = 20261201
rng = random.Random(SEED)

GIVEN = ["Alice", "Bob", "Maria", "John", "Priya", "Wei", "Fatima", "Lukas", "Sofia", "Ahmed",
         "Emma", "Carlos", "Yuki", "Olga", "James", "Amara", "Hannah", "Diego", "Chen", "Noah",
         "Isabelle", "Mohammed", "Grace", "Liam", "Ana", "Pierre", "Ingrid", "Ravi", "Zoe", "Kofi"]
SURNAMES = ["Johnson", "Meyer", "Garcia", "Smith", "Patel", "Zhang", "Khan", "Schneider",
            "Rossi", "Hassan", "Brown", "Lopez", "Tanaka", "Ivanova", "Wilson", "Okafor",
            "Fischer", "Martinez", "Li", "Anderson", "Dubois", "Larsen", "Sharma", "Mensah",
            "Novak", "Kowalski", "O'Brien", "Nguyen", "Silva", "Becker"]
CITIES = ["Berlin", "Paris", "Chicago", "Madrid", "Toronto", "Mumbai", "Lagos", "Osaka",
          "Springfield", "Munich", "Seattle", "Lyon", "Austin", "Hamburg", "Denver", "Leeds",
          "Portland", "Rotterdam", "Boston", "Zurich"]
REGIONS = ["California", "Texas", "Bavaria", "Ontario", "Illinois", "Oregon", "Florida",
           "New York", "Massachusetts", "Colorado"]
COUNTRIES = ["Germany", "France", "Canada", "Spain", "Japan", "Nigeria", "India", "Brazil"]
ORGS = ["Acme Corporation", "Siemens AG", "Globex Ltd", "Deutsche Bank", "the Red Cross",
        "Initech", "Umbrella Health", "Stark Industries", "Northwind Traders", "Contoso",
        "the University of Leeds", "Wayne Enterprises", "Blue Harbor Logistics", "Fabrikam Inc"]
DOMAINS = ["example.org", "example.com", "mail.acme.co.uk", "globex.de", "contoso.net",
           "uni-leeds.ac.uk", "northwind.io"]
STREETS = ["Baker Street", "Main Street", "Elm Avenue", "Hauptstrasse", "Rue de Rivoli",
           "Oak Lane", "Sunset Boulevard", "Calle Mayor"]


def person():
    if rng.random() < 0.2:
        return rng.choice(GIVEN)
    return f"{rng.choice(GIVEN)} {rng.choice(SURNAMES)}"


def full_name():
    return f"{rng.choice(GIVEN)} {rng.choice(SURNAMES)}"


def email():
    g, s = rng.choice(GIVEN).lower(), rng.choice(SURNAMES).lower().replace("'", "")
    local = rng.choice([f"{g}.{s}", f"{g[0]}{s}", f"{g}", f"{g}+news", f"{g}_{s}{rng.randint(1, 99)}"])
    return f"{local}@{rng.choice(DOMAINS)}"


def digits(n):
    return "".join(str(rng.randint(0, 9)) for _ in range(n))


def phone():
    f = rng.randrange(7)
    if f == 0:
        return f"+49 30 {digits(7)}"
    if f == 1:
        return f"({rng.randint(201, 989)}) 555-{digits(4)}"
    if f == 2:
        return f"{rng.randint(201, 989)}-555-{digits(4)}"
    if f == 3:
        return f"+1 {rng.randint(201, 989)} 555 {digits(4)}"
    if f == 4:
        return f"+44 20 7946 {digits(4)}"
    if f == 5:
        return f"+33 1 {digits(2)} {digits(2)} {digits(2)} {digits(2)}"
    return f"{rng.randint(201, 989)}.555.{digits(4)}"


def luhn_digit(body):
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:  # positions that get doubled once the check digit is appended
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def card_digits():
    kind = rng.randrange(3)
    if kind == 0:
        body = "4" + digits(14)
    elif kind == 1:
        body = str(rng.randint(51, 55)) + digits(13)
    else:
        body = rng.choice(["34", "37"]) + digits(12)
    return body + luhn_digit(body)


def group_card(num):
    sep = rng.choice([" ", "-", ""])
    if len(num) == 15:
        parts = [num[:4], num[4:10], num[10:]]
    else:
        parts = [num[i:i + 4] for i in range(0, len(num), 4)]
    return sep.join(parts)


def card(valid=True):
    num = card_digits()
    if not valid:
        num = num[:-1] + str((int(num[-1]) + 1) % 10)
    return group_card(num)


IBAN_FORMATS = {"DE": "n18", "GB": "a4n14", "FR": "n23", "NL": "a4n10", "ES": "n20", "IT": "a1n22"}


def bban(fmt):
    out = ""
    for kind, count in re.findall(r"([an])(\d+)", fmt):
        for _ in range(int(count)):
            out += rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") if kind == "a" else str(rng.randint(0, 9))
    return out


def iban_check(country, b):
    rearranged = b + country + "00"
    number = int("".join(str(int(ch, 36)) for ch in rearranged))
    return 98 - number % 97


def iban(valid=True):
    country = rng.choice(sorted(IBAN_FORMATS))
    b = bban(IBAN_FORMATS[country])
    check = iban_check(country, b)
    if not valid:
        check = check % 97 + 1 if check < 98 else 2
        check = (check + 1) if check == iban_check(country, b) else check
    compact = f"{country}{check:02d}{b}"
    if rng.random() < 0.6:
        return " ".join(compact[i:i + 4] for i in range(0, len(compact), 4))
    return compact


def ip():
    if rng.random() < 0.75:
        return ".".join(str(rng.randint(1, 254)) for _ in range(4))
    return rng.choice([f"2001:db8::{rng.randint(1, 0xffff):x}", "fe80::1ff:fe23:4567:890a",
                       f"2001:0db8:85a3:0000:0000:8a2e:0370:{rng.randint(0x1000, 0xffff):x}",
                       f"2a00:1450:4001:{rng.randint(0x100, 0xfff):x}::200e"])


def loc():
    return rng.choice(CITIES + REGIONS + COUNTRIES)


GEN = {"PERSON": person, "FULLNAME": full_name, "LOC": loc, "CITY": lambda: rng.choice(CITIES),
       "REGION": lambda: rng.choice(REGIONS), "ORG": lambda: rng.choice(ORGS), "EMAIL": email,
       "PHONE": phone, "CREDIT_CARD": card, "IBAN": iban, "IP": ip,
       "BADCARD": lambda: card(False), "BADIBAN": lambda: iban(False),
       "STREET": lambda: f"{rng.randint(1, 250)} {rng.choice(STREETS)}",
       "ZIP": lambda: digits(5)}
GOLD = {"PERSON": "PERSON", "FULLNAME": "PERSON", "LOC": "LOC", "CITY": "LOC", "REGION": "LOC",
        "ORG": "ORG", "EMAIL": "EMAIL", "PHONE": "PHONE", "CREDIT_CARD": "CREDIT_CARD",
        "IBAN": "IBAN", "IP": "IP"}

TEMPLATES = {
    "person": ["{PERSON} called yesterday about the invoice.",
               "Please forward the contract to {FULLNAME} before Friday.",
               "Meeting notes: {PERSON} and {FULLNAME} agreed on the budget.",
               "Dear {FULLNAME}, thank you for your order.",
               "The patient, {FULLNAME}, was discharged on Monday.",
               "Best regards, {FULLNAME}",
               "Ask {PERSON} whether the report is ready.",
               "According to {FULLNAME}, the shipment left on time."],
    "loc": ["She moved to {LOC} last year.",
            "Our new office opens in {CITY} next month.",
            "The flight from {CITY} to {CITY} was delayed by two hours.",
            "{FULLNAME} lives at {STREET}, {CITY}, {REGION} {ZIP}.",
            "Ship it to {STREET}, {CITY}.",
            "The conference takes place in {CITY}, {LOC}."],
    "org": ["{FULLNAME} works for {ORG} in {CITY}.",
            "{ORG} announced record profits this quarter.",
            "The grant was awarded by {ORG}.",
            "I have been a customer of {ORG} for ten years."],
    "email": ["Contact me at {EMAIL} for details.",
              "Send the CV to {EMAIL} by Monday.",
              "cc: {EMAIL}, {EMAIL}",
              "Her address is {EMAIL}; please update the record."],
    "phone": ["Call {PHONE} after 6 pm.",
              "My number is {PHONE}.",
              "Support hotline: {PHONE} (24/7)",
              "{FULLNAME} can be reached on {PHONE}."],
    "card": ["Charge it to card {CREDIT_CARD}, exp 09/27.",
             "The card number {CREDIT_CARD} was declined.",
             "Refund to {CREDIT_CARD} please."],
    "iban": ["Please wire the amount to {IBAN}.",
             "IBAN: {IBAN} (account holder {FULLNAME})",
             "Our bank details changed to {IBAN}."],
    "ip": ["Login from {IP} was blocked.",
           "The server at {IP} is not responding.",
           "Allow {IP} and {IP} in the firewall."],
    "mixed": ["{FULLNAME} ({EMAIL}, {PHONE}) paid with {CREDIT_CARD}.",
              "Customer {FULLNAME} from {CITY} asked to use {IBAN} instead.",
              "Ticket: user {EMAIL} logged in from {IP} in {CITY}.",
              "{FULLNAME} of {ORG} called from {PHONE} about card {CREDIT_CARD}."],
    "negative-checksum": ["Order {BADCARD} has shipped.",
                          "Reference {BADIBAN} is not an account number.",
                          "Batch {BADCARD} failed the import.",
                          "The code {BADIBAN} was rejected."],
}
COUNTS = {"person": 40, "loc": 30, "org": 20, "email": 24, "phone": 30, "card": 20,
          "iban": 20, "ip": 20, "mixed": 24, "negative-checksum": 24}

HARD_NEGATIVES = [
    "Order number 2024-0815-1123 shipped on 2024-01-15.",
    "Release 1.2.3.4 fixes bug #48213.",
    "Upgrade from version 10.2.3.4.5 to 10.2.3.4.6 before Friday.",
    "Invalid address 999.12.7.300 found in the log.",
    "Invoice INV-2023-000123 totals 4,532.10 EUR.",
    "The meeting is at 10:30:00 in room 404.",
    "ISBN 978-3-16-148410-0 is out of print.",
    "Tracking code 1Z999AA10123456784 arrives Tuesday.",
    "The office is closed on 12/25/2024 and 01/01/2025.",
    "Body temperature 36.6 degrees, pulse 72.",
    "Product code DE12345 is back in stock.",
    "The EAN 4006381333931 is printed on the box.",
    "Our revenue grew 12.5% to 3,400,000 in 2023.",
    "Use the @support handle on the forum.",
    "The logo@2x.png asset is missing from the build.",
    "Set timeout=30000 and retries=5 in config.yaml.",
    "Build 20231115.4 passed all 1280 tests.",
    "Table 3 lists values from 0.001 to 1000.",
    "The serial SN-8842-1173-0091 is registered.",
    "Flight LH 400 departs at 13:45 from gate B22.",
    "Commit a3f9c2e1 introduced the regression.",
    "Population: 8,336,817 (2022 estimate).",
    "The chemical formula C6H12O6 describes glucose.",
    "Press Ctrl+Shift+Esc to open the task manager.",
    "Step 3 of 7: confirm the 6-digit code.",
    "Coordinates 52.5200, 13.4050 mark the square.",
    "The bill of 1,299.99 USD is due in 30 days.",
    "Ticket PRJ-1024 blocks PRJ-1025 and PRJ-1026.",
    "Room 12-345-6789 does not exist in building C.",
    "The quick brown fox jumps over the lazy dog.",
]


def fill(template):
    text, spans, pos = "", [], 0
    for m in re.finditer(r"\{([A-Z_]+)\}", template):
        text += template[pos:m.start()]
        value = GEN[m.group(1)]()
        gold = GOLD.get(m.group(1))
        if gold:
            spans.append({"type": gold, "start": len(text), "end": len(text) + len(value), "text": value})
        text += value
        pos = m.end()
    text += template[pos:]
    return text, spans


def main():
    rows = []
    for group, n in COUNTS.items():
        templates = TEMPLATES[group]
        for i in range(n):
            text, spans = fill(templates[i % len(templates)])
            rows.append({"group": group, "text": text, "spans": spans})
    for text in HARD_NEGATIVES:
        rows.append({"group": "negative-hand", "text": text, "spans": []})
    for i, r in enumerate(rows):
        r["id"] = i
        for s in r["spans"]:
            assert r["text"][s["start"]:s["end"]] == s["text"]
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "set.jsonl")
    with open(out, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({"id": r["id"], "group": r["group"], "text": r["text"],
                                "spans": r["spans"]}, ensure_ascii=False) + "\n")
    counts = {}
    for r in rows:
        for s in r["spans"]:
            counts[s["type"]] = counts.get(s["type"], 0) + 1
    print(f"{len(rows)} sentences -> {out}; gold spans: {counts}")


if __name__ == "__main__":
    main()
