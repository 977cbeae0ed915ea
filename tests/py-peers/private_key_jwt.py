"""The official MCP Python SDK's own private_key_jwt client against Warden.

Usage: private_key_jwt.py MCP_URL ISSUER CLIENT_ID KEY.pem ALG TOOL ARGS_JSON

Connects with `PrivateKeyJWTOAuthProvider` (assertions signed by the SDK,
`SignedJWTParameters`) over the streamable HTTP client, calls TOOL and
prints one JSON line: {"ok": true, "text": ...} or {"ok": false, "error": ...}.
Exits 0 either way; the calling test decides what was expected.
"""

import asyncio
import json
import sys

from mcp.client.auth.extensions.client_credentials import PrivateKeyJWTOAuthProvider, SignedJWTParameters
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


class MemoryStorage:
    """Tokens and client information for one run."""

    def __init__(self):
        self.tokens = None
        self.client_info = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client_info

    async def set_client_info(self, client_info):
        self.client_info = client_info


def leaf_errors(e):
    """The messages of an exception and of everything it groups or chains."""
    out = [f"{type(e).__name__}: {e}"]
    for inner in getattr(e, "exceptions", ()):
        out.extend(leaf_errors(inner))
    if e.__cause__ is not None:
        out.extend(leaf_errors(e.__cause__))
    return out


async def main(mcp_url, issuer, client_id, key_path, alg, tool, args):
    with open(key_path) as f:
        pem = f.read()
    jwt_params = SignedJWTParameters(issuer=client_id, subject=client_id, signing_key=pem, signing_algorithm=alg)
    provider = PrivateKeyJWTOAuthProvider(
        server_url=mcp_url,
        storage=MemoryStorage(),
        client_id=client_id,
        assertion_provider=jwt_params.create_assertion_provider(),
        issuer=issuer,
    )
    return await call_tool(provider, mcp_url, tool, args)


async def call_tool(provider, mcp_url, tool, args):
    """Connect to MCP_URL with the SDK's streamable HTTP client, authenticated by `provider`, and call TOOL."""
    async with create_mcp_http_client(auth=provider) as http:
        async with streamable_http_client(mcp_url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                result = await session.call_tool(tool, args)
                return result.content[0].text


def report(run):
    """Run the coroutine `run` and print its one JSON line; exits 0 either way."""
    try:
        print(json.dumps({"ok": True, "text": asyncio.run(run)}))
    except BaseException as e:  # noqa: BLE001 - the test asserts on the message
        print(json.dumps({"ok": False, "error": " | ".join(leaf_errors(e))}))
    sys.stdout.flush()


if __name__ == "__main__":
    report(main(*sys.argv[1:7], json.loads(sys.argv[7])))
