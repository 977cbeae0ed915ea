"""The official MCP Python SDK's client in its default mode ('auto': it
probes `server/discover` and speaks MCP 2026-07-28 where it can) through
`warden connect` on stdio: the version it settled on, a listing, a tool
call with progress, a call whose upstream asks the user for input (MRTR,
answered by this client's elicitation callback), and a call with an
argument the tool mirrors into a header.

usage: modern_client.py WARDEN GATEWAY AGENT KEY
Prints one JSON object with what the client saw.
"""

import asyncio
import json
import sys

from mcp import StdioServerParameters, types
from mcp.client.client import Client


async def main(warden: str, gateway: str, agent: str, key: str) -> None:
    asked, progress = [], []

    async def elicitation(context, params):
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    async def on_progress(done, total, message):
        progress.append(done)

    server = StdioServerParameters(command=warden, args=["connect", "--gateway", gateway, "--agent", agent, "--key", key])
    async with Client(server, elicitation_callback=elicitation) as client:
        tools = await client.list_tools()
        with_progress = await client.call_tool("test_tool_with_progress", {}, progress_callback=on_progress)
        greeted = await client.call_tool("test_input_required_result_elicitation", {})
        mirrored = await client.call_tool("test_mcp_param_header", {"region": "São Paulo"})
        text = lambda r: " ".join(c.text for c in r.content if c.type == "text")
        print(json.dumps({
            "protocol_version": client.protocol_version,
            "server": client.server_info.name if client.server_info else None,
            "tools": sorted(t.name for t in tools.tools),
            "progress": progress,
            "with_progress": text(with_progress),
            "asked": asked,
            "greeted": text(greeted),
            "mirrored": text(mirrored),
        }))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
