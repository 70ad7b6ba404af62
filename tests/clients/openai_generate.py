"""The official OpenAI Python client's completions and chat (streamed and whole) against
llmos, unchanged but for the base URL.

Usage: python openai_generate.py http://127.0.0.1:PORT/v1 MODEL   (exits non-zero on any mismatch)
"""

import sys

import openai
from openai import OpenAI

client = OpenAI(base_url=sys.argv[1], api_key="any-key-works-on-an-open-loopback-server", max_retries=0)
model = sys.argv[2]

# Completions: whole, then streamed; the same greedy text.
whole = client.completions.create(model=model, prompt="once upon a time", max_tokens=20, temperature=0)
assert whole.object == "text_completion", whole
assert whole.choices[0].finish_reason in ("stop", "length"), whole
assert whole.usage.completion_tokens <= 20 and whole.usage.prompt_tokens > 0, whole.usage
pieces, finish = [], None
for chunk in client.completions.create(model=model, prompt="once upon a time", max_tokens=20, temperature=0, stream=True):
    pieces.append(chunk.choices[0].text)
    finish = chunk.choices[0].finish_reason or finish
assert "".join(pieces) == whole.choices[0].text, (pieces, whole)
assert finish == whole.choices[0].finish_reason

# Chat: whole, then streamed with usage.
messages = [{"role": "user", "content": "What is the capital of France?"}]
r = client.chat.completions.create(model=model, messages=messages, max_tokens=16, temperature=0, seed=1)
assert r.choices[0].message.role == "assistant", r
text = r.choices[0].message.content
pieces, usage = [], None
stream = client.chat.completions.create(
    model=model, messages=messages, max_tokens=16, temperature=0, seed=1,
    stream=True, stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for c in chunk.choices:
        if c.delta.content:
            pieces.append(c.delta.content)
assert "".join(pieces) == text, (pieces, text)
assert usage is not None and usage.completion_tokens == r.usage.completion_tokens, (usage, r.usage)

# What llmos does not do yet is refused by name, not ignored.
try:
    client.chat.completions.create(model=model, messages=messages, logit_bias={"1": 5})
    raise SystemExit("expected BadRequestError")
except openai.BadRequestError as e:
    assert "logit_bias" in str(e), e
print("ok")
