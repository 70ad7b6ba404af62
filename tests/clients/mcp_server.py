"""A loopback MCP server written with the official MCP Python SDK (`MCPServer`, Streamable
HTTP), requiring a bearer token, for llmos's MCP client tests (`llmos mcp add`).

Usage: mcp_server.py TOKEN LOG_FILE [stateful]
Prints `listening on http://127.0.0.1:PORT/mcp` once its socket listens. Every request's
`Authorization` header is appended to LOG_FILE (one line each); a request without
`Authorization: Bearer TOKEN` is answered 401.

Tools: `shout`, `add`, `nap` (sleeps `seconds`, for timeouts) and `grow`, which adds the
tool `triple` at runtime and, in `stateful` mode (sessions, each with its stream of
server notifications), sends `notifications/tools/list_changed` to the calling session.
"""

import asyncio
import socket
import sys

import uvicorn
from mcp.server.mcpserver import Context, MCPServer

TOKEN, LOG = sys.argv[1], sys.argv[2]
STATEFUL = len(sys.argv) > 3 and sys.argv[3] == "stateful"

mcp = MCPServer("loopback-test")


@mcp.tool()
def shout(text: str) -> str:
    """Upper-cases a text and adds an exclamation mark."""
    return text.upper() + "!"


@mcp.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@mcp.tool()
async def nap(seconds: float) -> str:
    """Sleeps for some seconds, then says so."""
    await asyncio.sleep(seconds)
    return f"slept {seconds} s"


def triple(n: int) -> int:
    """Triples an integer."""
    return 3 * n


@mcp.tool()
async def grow(ctx: Context) -> str:
    """Adds the tool `triple` and tells the client its tool list changed."""
    mcp.add_tool(triple)
    await ctx.request_context.session.send_tool_list_changed()
    return "added triple"


app = mcp.streamable_http_app(json_response=True, stateless_http=not STATEFUL)


async def guarded(scope, receive, send):
    if scope["type"] == "http":
        auth = dict(scope["headers"]).get(b"authorization", b"").decode()
        with open(LOG, "a") as f:
            f.write(f"{scope['method']} {scope['path']} {auth}\n")
        if auth != f"Bearer {TOKEN}":
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")]})
            await send({"type": "http.response.body", "body": b"a bearer token is required"})
            return
    await app(scope, receive, send)


if __name__ == "__main__":
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    print(f"listening on http://127.0.0.1:{port}/mcp", flush=True)
    server = uvicorn.Server(uvicorn.Config(guarded, log_level="warning", lifespan="on"))
    server.run(sockets=[sock])
