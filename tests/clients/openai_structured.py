"""The official OpenAI Python client's structured output and tools against llmos, unchanged
but for the base URL (docs/generation.md §6a).

Usage: python openai_structured.py http://127.0.0.1:PORT/v1 MODEL   (exits non-zero on any mismatch)
"""

import json
import sys

import jsonschema_rs
from openai import OpenAI

client = OpenAI(base_url=sys.argv[1], api_key="any-key-works-on-an-open-loopback-server", max_retries=0)
model = sys.argv[2]

# response_format json_schema: the content parses and validates.
schema = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 30}, "population": {"type": "integer"}},
    "required": ["city", "population"],
    "additionalProperties": False,
}
r = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "The largest city of France and its population, as JSON."}],
    response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}},
    max_tokens=60, temperature=0.7, seed=5,
)
assert r.choices[0].finish_reason == "stop", r
jsonschema_rs.validate(schema, json.loads(r.choices[0].message.content))

# Streamed json_object: the pieces join to one object.
pieces, finish = [], None
for chunk in client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "Give a JSON object with the name and age of a person."}],
    response_format={"type": "json_object"}, max_tokens=200, temperature=1, seed=2, stream=True,
):
    for c in chunk.choices:
        pieces.append(c.delta.content or "")
        finish = c.finish_reason or finish
assert finish == "stop", (finish, pieces)
assert isinstance(json.loads("".join(pieces)), dict), pieces

weather = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 30}, "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
}
tools = [
    {"type": "function", "function": {"name": "get_weather", "description": "The current weather in a city.", "parameters": weather}},
    {"type": "function", "function": {"name": "get_time", "description": "The time in a timezone.",
                                      "parameters": {"type": "object", "properties": {"timezone": {"type": "string", "maxLength": 40}}, "required": ["timezone"]}}},
]
messages = [{"role": "user", "content": "What is the weather like in Paris today?"}]

# A named function: always a valid call to it.
for seed in range(5):
    r = client.chat.completions.create(
        model=model, messages=messages, tools=tools, max_tokens=80, temperature=1, seed=seed,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", r
    assert choice.message.content is None, r
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_"), call
    jsonschema_rs.validate(weather, json.loads(call.function.arguments))

# "required", streamed: the deltas assemble to a valid call to one of the tools.
name, args, finish, ids = "", "", None, set()
for chunk in client.chat.completions.create(
    model=model, messages=messages, tools=tools, tool_choice="required", max_tokens=80, temperature=1, seed=7, stream=True,
    parallel_tool_calls=False,
):
    for c in chunk.choices:
        for tc in c.delta.tool_calls or []:
            assert tc.index == 0, tc
            if tc.id:
                ids.add(tc.id)
            name += tc.function.name or ""
            args += tc.function.arguments or ""
        finish = c.finish_reason or finish
assert finish == "tool_calls" and len(ids) == 1, (finish, ids)
assert name in ("get_weather", "get_time"), name
json.loads(args)

# "auto": either text or a valid call.
r = client.chat.completions.create(model=model, messages=messages, tools=tools, max_tokens=60, temperature=0)
m = r.choices[0].message
if m.tool_calls:
    assert r.choices[0].finish_reason == "tool_calls", r
    json.loads(m.tool_calls[0].function.arguments)
else:
    assert m.content and r.choices[0].finish_reason in ("stop", "length"), r

# A full round trip: the call, the tool's answer, then a text answer that uses it.
r = client.chat.completions.create(
    model=model, messages=messages, tools=tools, max_tokens=80, temperature=0,
    tool_choice={"type": "function", "function": {"name": "get_weather"}},
)
call = r.choices[0].message.tool_calls[0]
followup = messages + [
    {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
    {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 21, "sky": "sunny"})},
]
r = client.chat.completions.create(model=model, messages=followup, tools=tools, tool_choice="none", max_tokens=60, temperature=0)
answer = r.choices[0].message
assert not answer.tool_calls and answer.content, r
assert r.choices[0].finish_reason in ("stop", "length"), r

# json_schema: the properties come in the schema's own order (not sorted by name).
ordered = {
    "type": "object",
    "properties": {"zip": {"type": "string", "maxLength": 8}, "city": {"type": "string", "maxLength": 30},
                   "country": {"type": "string", "maxLength": 30}, "area": {"type": "integer"}},
    "required": ["zip", "city", "country", "area"],
    "additionalProperties": False,
}
r = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "Describe Paris as JSON."}],
    response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": ordered}},
    max_tokens=80, temperature=0,
)
place = json.loads(r.choices[0].message.content)
assert list(place) == ["zip", "city", "country", "area"], r.choices[0].message.content

# A tool's parameters likewise: a forced call writes its arguments in the declared order.
locate = [{"type": "function", "function": {"name": "locate", "description": "Where a place is.", "parameters": ordered}}]
r = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "Where is Paris?"}], tools=locate,
    tool_choice={"type": "function", "function": {"name": "locate"}}, max_tokens=120, temperature=0,
)
args = r.choices[0].message.tool_calls[0].function.arguments
assert list(json.loads(args)) == ["zip", "city", "country", "area"], args

# Several calls in one answer (parallel_tool_calls, the default): asked about two places, two
# calls (greedy; the frequency penalty keeps a 135M model from repeating its first call),
# each valid under its tool's schema, whole and streamed alike (`index` per call); with
# parallel_tool_calls=False, one call.
schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
two = [{"role": "user", "content": "What is the weather like in Paris and in London?"}]
several = dict(model=model, messages=two, tools=tools, tool_choice="required", max_tokens=100, temperature=0, frequency_penalty=1.0)
r = client.chat.completions.create(**several)
calls = r.choices[0].message.tool_calls
assert r.choices[0].finish_reason == "tool_calls" and calls and len(calls) == 2, r
assert len({c.id for c in calls}) == 2, calls
for c in calls:
    jsonschema_rs.validate(schemas[c.function.name], json.loads(c.function.arguments))
whole = [(c.function.name, json.loads(c.function.arguments)) for c in calls]
streamed, finish = {}, None
for chunk in client.chat.completions.create(**several, stream=True):
    for c in chunk.choices:
        for tc in c.delta.tool_calls or []:
            name, args = streamed.get(tc.index, ("", ""))
            streamed[tc.index] = (name + (tc.function.name or ""), args + (tc.function.arguments or ""))
        finish = c.finish_reason or finish
assert finish == "tool_calls", finish
assert [(n, json.loads(a)) for _, (n, a) in sorted(streamed.items())] == whole, (streamed, whole)
r = client.chat.completions.create(**several, parallel_tool_calls=False)
assert r.choices[0].finish_reason == "tool_calls" and len(r.choices[0].message.tool_calls) == 1, r
print("ok:", answer.content, whole, place)
