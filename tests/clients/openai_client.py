"""The official OpenAI Python client against llmos, unchanged but for base URL and key.

Usage: python openai_client.py http://127.0.0.1:PORT/v1 [API_KEY]   (exits non-zero on any mismatch)
"""

import math
import sys

import openai
from openai import OpenAI

key = sys.argv[2] if len(sys.argv) > 2 else "any-key-works-on-an-open-loopback-server"
client = OpenAI(base_url=sys.argv[1], api_key=key, max_retries=0)

if len(sys.argv) > 2:
    try:
        OpenAI(base_url=sys.argv[1], api_key="llmos_wrong_key", max_retries=0).models.list()
        raise SystemExit("expected AuthenticationError")
    except openai.AuthenticationError as e:
        assert e.status_code == 401, e

ids = [m.id for m in client.models.list()]
assert "minilm" in ids and "pii-ner" in ids, ids
assert client.models.retrieve("minilm").id == "minilm"

# The client asks for base64 unless told otherwise, and decodes it itself.
r = client.embeddings.create(model="minilm", input=["The cat sits on the mat.", "A cat is sitting on a mat."])
assert len(r.data) == 2 and r.data[1].index == 1, r
a, b = r.data[0].embedding, r.data[1].embedding
assert len(a) == 384, len(a)
assert abs(math.sqrt(sum(x * x for x in a)) - 1) < 1e-4
cos = sum(x * y for x, y in zip(a, b))
assert cos > 0.8, cos
assert r.usage.prompt_tokens > 10 and r.usage.total_tokens == r.usage.prompt_tokens, r.usage
assert r.model == "minilm"

f = client.embeddings.create(model="minilm", input="The cat sits on the mat.", encoding_format="float")
assert max(abs(x - y) for x, y in zip(f.data[0].embedding, a)) < 1e-6

try:
    client.embeddings.create(model="no-such-model", input="x")
    raise SystemExit("expected NotFoundError")
except openai.NotFoundError as e:
    assert e.status_code == 404 and "no-such-model" in str(e), e

try:
    client.embeddings.create(model="minilm", input=[])
    raise SystemExit("expected BadRequestError")
except openai.BadRequestError as e:
    assert "empty array" in str(e), e

print("openai client: ok")
