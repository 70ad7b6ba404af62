"""{{name}}: an llmos integration in Python (componentize-py).

Logs every event it receives (`inference.finished`, `request.denied`) into the host's log.
Integrations run after the response was sent: an error here is only logged. To call another
system, request `http:<host>` in manifest.toml and use `wasi:http` (see docs/plugins.md).
"""

import wit_world
from wit_world.imports import config, log
from wit_world.imports.types import Event


class WitWorld(wit_world.WitWorld):
    def on_event(self, event: Event) -> None:
        prefix = config.get("prefix") or ""
        ctx = event.context
        log.log(log.Level.INFO, f"{prefix}{event.kind} model={ctx.model} task={ctx.task} route={ctx.route}")
