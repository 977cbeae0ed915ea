"""The official MCP Python SDK's stdio client reaching a tool through
`warden connect`, launched exactly as a host launches a stdio server.

usage: stdio_client.py WARDEN GATEWAY AGENT KEY TOOL MESSAGE
Prints one JSON object: the tools the client saw and the call's text.
"""

import asyncio
import json
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


async def main(warden: str, gateway: str, agent: str, key: str, tool: str, message: str) -> None:
    server = StdioServerParameters(command=warden, args=["connect", "--gateway", gateway, "--agent", agent, "--key", key])
    async with stdio_client(server) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            tools = await session.list_tools()
            result = await session.call_tool(tool, {"message": message})
            print(json.dumps({
                "server": init.server_info.name,
                "protocol": init.protocol_version,
                "tools": sorted(t.name for t in tools.tools),
                "text": result.content[0].text,
                "is_error": bool(result.is_error),
            }))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:7]))
