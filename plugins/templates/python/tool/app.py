"""{{name}}: an llmos tool plugin in Python (componentize-py).

It offers one tool, `{{name}}`, that counts the words of a text and upper-cases it. A model
calls it with JSON arguments matching the schema below (the host checks them first); the
answer is text for the model, here JSON.

Raise `componentize_py_types.Err(Error_InvalidInput("why"))` to answer with an error the
model reads (e.g. arguments that make no sense). Host functions (`wit_world.imports.data`,
`kv`, `inference`, ...) raise `Err(error)` with an `Error_*` value when they fail, e.g.
`Error_Denied("data:handbook")` when a capability is not granted.
"""

import json
from typing import List

import wit_world
from componentize_py_types import Err
from wit_world.imports.types import Error_InvalidInput, Error_NotFound, ToolCall, ToolSpec

PARAMETERS = {
    "type": "object",
    "properties": {
        "text": {"type": "string", "description": "The text to count and upper-case."},
    },
    "required": ["text"],
    "additionalProperties": False,
}


class WitWorld(wit_world.WitWorld):
    def tools(self) -> List[ToolSpec]:
        """The tools this plugin offers; the host asks once, at install."""
        return [
            ToolSpec(
                name="{{name}}",
                description="Counts the words of a text and returns it in upper case. "
                'Example: {"text": "hello world"}.',
                parameters_json=json.dumps(PARAMETERS),
            )
        ]

    def invoke(self, call: ToolCall) -> str:
        """Runs one call; an `Err` goes back to the model as the tool's answer."""
        if call.name != "{{name}}":
            raise Err(Error_NotFound(f"tool {call.name}: this plugin offers {{name}}"))
        try:
            args = json.loads(call.arguments_json)
        except ValueError as e:
            raise Err(Error_InvalidInput(f"arguments of {{name}}: not JSON: {e}"))
        text = args.get("text") if isinstance(args, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise Err(Error_InvalidInput('arguments of {{name}}: field `text` must be a non-empty string'))
        return json.dumps({"words": len(text.split()), "upper": text.upper()})
