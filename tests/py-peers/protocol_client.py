"""The official MCP Python SDK's stdio client using the whole protocol
through `warden connect`: resources (every page), a resource read, prompts,
a completion, a tool call's progress, and the upstream's sampling request
answered by this client's own sampling callback.

usage: protocol_client.py WARDEN GATEWAY AGENT KEY
Prints one JSON object with what the client saw.
"""

import asyncio
import json
import sys

from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client


async def main(warden: str, gateway: str, agent: str, key: str) -> None:
    asked = []

    async def sampling(context, params):
        asked.append(params.messages[0].content.text)
        return types.CreateMessageResult(role="assistant", model="test-model", content=types.TextContent(type="text", text="four"))

    server = StdioServerParameters(command=warden, args=["connect", "--gateway", gateway, "--agent", agent, "--key", key])
    async with stdio_client(server) as (read, write):
        async with ClientSession(read, write, sampling_callback=sampling) as session:
            await session.initialize()
            uris, cursor = [], None
            while True:
                page = await session.list_resources(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)
                uris.extend(str(r.uri) for r in page.resources)
                cursor = page.next_cursor
                if not cursor:
                    break
            read_back = await session.read_resource("everything+demo://resource/dynamic/text/2")
            prompts = await session.list_prompts()
            simple = await session.get_prompt("everything__simple-prompt")
            completed = await session.complete(
                types.PromptReference(type="ref/prompt", name="everything__completable-prompt"), {"name": "department", "value": "Sa"}
            )
            progress = []

            async def on_progress(value, total, message):
                progress.append([value, total])

            long_op = await session.call_tool("everything__trigger-long-running-operation", {"duration": 1, "steps": 2}, progress_callback=on_progress)
            sampled = await session.call_tool("everything__trigger-sampling-request", {"prompt": "what is two plus two?", "maxTokens": 5})
            print(json.dumps({
                "resources": uris,
                "read": [str(c.uri) for c in read_back.contents],
                "prompts": sorted(p.name for p in prompts.prompts),
                "prompt_text": simple.messages[0].content.text,
                "completion": completed.completion.values,
                "progress": progress,
                "long_op": long_op.content[0].text,
                "sampled": sampled.content[0].text,
                "asked": asked,
            }))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
