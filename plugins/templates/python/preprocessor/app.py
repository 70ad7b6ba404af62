"""{{name}}: an llmos preprocessor in Python (componentize-py).

Upper-cases every input and appends the `suffix` config value, in which `{n}` stands for
the number of calls so far: a counter kept in the plugin's private kv store (capability
`kv`). An input that starts with `embed:` asks the `minilm` model for an embedding of the
rest instead and returns its size, or the error: without `inference:minilm` requested in
manifest.toml and granted by the operator, the host answers `denied("inference:minilm")`.

Host functions raise `componentize_py_types.Err(error)`, where `error` is one of
`wit_world.imports.types.Error_*` (Denied, NotFound, InvalidInput, LimitExceeded,
Unavailable): values to handle, never crashes. Raise `Err(Error_InvalidInput(...))` to
fail the request with a message for the client.
"""

from typing import List

import wit_world
from componentize_py_types import Err
from wit_world.imports import config, inference, kv, log
from wit_world.imports.types import Error, Request


def describe(error: Error) -> str:
    """`denied: inference:minilm`, `not-found: ...`: the variant and its message."""
    kind = type(error).__name__.removeprefix("Error_")
    kind = "".join("-" + c.lower() if c.isupper() else c for c in kind).lstrip("-")
    return f"{kind}: {error.value}"


def count_call() -> str:
    """Adds one to the `calls` counter in kv and returns it ("?" when kv is denied)."""
    try:
        raw = kv.get("calls")
        n = int(raw.decode()) + 1 if raw else 1
        kv.set("calls", str(n).encode())
        return str(n)
    except Err as e:
        log.log(log.Level.WARN, f"call counter unavailable: {describe(e.value)}")
        return "?"


def embed_info(text: str) -> str:
    try:
        vectors = inference.embed("minilm", [text])
        return f"embedding of {len(vectors[0])} dimensions"
    except Err as e:
        return f"embed failed: {describe(e.value)}"


class WitWorld(wit_world.WitWorld):
    def preprocess(self, request: Request) -> List[str]:
        n = count_call()
        suffix = (config.get("suffix") or "").replace("{n}", n)
        out = [
            embed_info(t.removeprefix("embed:").strip()) if t.startswith("embed:") else t.upper() + suffix
            for t in request.inputs
        ]
        log.log(log.Level.DEBUG, f"call {n}: {len(out)} inputs")
        return out
