"""The official MCP Python SDK (`mcp` on PyPI), unchanged, against llmos's `/mcp`.

Usage: mcp_client.py URL KEY [CALLS_JSON]
  URL   the Streamable HTTP endpoint (http://127.0.0.1:PORT/mcp)
  KEY   an API key, sent as `Authorization: Bearer KEY` ("-" for none)
  CALLS_JSON  a JSON list of [tool, arguments] pairs to call (default: none)

Prints one JSON object: the server's name, the tools it lists (name and schema), and each
call's result: {"tool", "is_error", "text", "structured"}; or {"tool", "protocol_error"} when
the server answers the call with a JSON-RPC error.
"""

import asyncio
import json
import sys

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError


async def main(url: str, key: str, calls: list) -> dict:
    headers = {} if key == "-" else {"Authorization": f"Bearer {key}"}
    transport = streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))
    out: dict = {"calls": []}
    async with Client(transport) as client:
        tools = await client.list_tools()
        out["tools"] = [{"name": t.name, "description": t.description, "input_schema": t.input_schema} for t in tools.tools]
        for name, args in calls:
            try:
                r = await client.call_tool(name, args)
            except MCPError as e:
                out["calls"].append({"tool": name, "protocol_error": str(e)})
                continue
            text = "\n".join(c.text for c in r.content if getattr(c, "type", "") == "text")
            out["calls"].append({"tool": name, "is_error": bool(r.is_error), "text": text, "structured": r.structured_content})
    return out


if __name__ == "__main__":
    calls = json.loads(sys.argv[3]) if len(sys.argv) > 3 else []
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], calls))))
