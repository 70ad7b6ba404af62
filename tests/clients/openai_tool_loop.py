"""The official OpenAI Python client, unchanged, streaming a chat that runs llmos's tool loop.

Usage: openai_tool_loop.py BASE_URL KEY BODY_JSON
  BODY_JSON  a /v1/chat/completions body; `model` and `messages` go as the client's own
             arguments, the rest (`tools` with llmos_tool entries, a `tool_choice` list, ...)
             as extra_body, as a client passes llmos's extensions.

Prints one JSON object: {"steps": [every `steps` message of the chunks, in order],
"content": the streamed text, "finish_reason", "chunks": how many chunks came}.
"""

import json
import sys

from openai import OpenAI

url, key, body = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
client = OpenAI(base_url=url, api_key=key, max_retries=0)
model, messages = body.pop("model"), body.pop("messages")
stream = client.chat.completions.create(model=model, messages=messages, stream=True, extra_body=body)
out = {"steps": [], "content": "", "finish_reason": None, "chunks": 0}
for chunk in stream:
    out["chunks"] += 1
    for choice in chunk.choices:
        assert choice.index == 0, choice
        out["steps"].extend((choice.model_extra or {}).get("steps") or [])
        if choice.delta.content:
            out["content"] += choice.delta.content
        if choice.finish_reason:
            out["finish_reason"] = choice.finish_reason
print(json.dumps(out))
