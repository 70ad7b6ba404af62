"""{{name}}: an llmos policy in Python (componentize-py).

Denies every request whose inputs contain the `denied_word` config value (case-insensitive)
and lets every response through. Return `RequestVerdict_Modify([...])` to rewrite the
inputs instead, or `ResponseVerdict_Deny(reason)` to withhold a response.
"""

import wit_world
from wit_world.imports import config, log
from wit_world.imports.types import (
    Request,
    RequestVerdict,
    RequestVerdict_Allow,
    RequestVerdict_Deny,
    Response,
    ResponseVerdict,
    ResponseVerdict_Allow,
)


class WitWorld(wit_world.WitWorld):
    def check_request(self, request: Request) -> RequestVerdict:
        word = (config.get("denied_word") or "").strip().lower()
        if word and any(word in text.lower() for text in request.inputs):
            log.log(log.Level.INFO, f"denied request {request.context.request_id}")
            return RequestVerdict_Deny(f"the input contains {word!r}")
        return RequestVerdict_Allow()

    def check_response(self, response: Response) -> ResponseVerdict:
        return ResponseVerdict_Allow()
