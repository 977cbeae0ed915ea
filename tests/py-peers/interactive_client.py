"""The official MCP Python SDK's own OAuth client as an MCP host acting for a human.

Usage: interactive_client.py MCP_URL CLIENT_METADATA_URL REDIRECT_URI TOOL ARGS_JSON

`OAuthClientProvider` with a Client ID Metadata Document URL as its client id
discovers Warden from its 401 challenge, sends the "browser" (a redirect
follower with a cookie jar, standing in for the human's) through Warden's
authorization endpoint (answering its consent page) and the IdP's sign-in
to REDIRECT_URI, redeems the
code with its PKCE verifier, then calls TOOL. Prints one JSON line:
{"ok": true, "text": ...} or {"ok": false, "error": ...}; exits 0 either way.
"""

import json
import re
import sys

import httpx2 as httpx
from mcp.client.auth import OAuthClientProvider
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata

from private_key_jwt import MemoryStorage, call_tool, report


async def main(mcp_url, metadata_url, redirect_uri, tool, args):
    landed = {}

    async def browse(url):
        async with httpx.AsyncClient() as browser:
            form = None
            for _ in range(20):
                if form is None and url.startswith(redirect_uri):
                    landed["url"] = httpx.URL(url)
                    return
                if form is None:
                    r = await browser.get(url, follow_redirects=False)
                else:
                    r = await browser.post(url, data=form, follow_redirects=False)
                form = None
                location = r.headers.get("location")
                if location:
                    url = str(httpx.URL(url).join(location))
                    continue
                # Warden's consent page: the human reads it and continues.
                consent = re.search(r'<form method=post action="([^"]+)"><input type=hidden name=consent value="([^"]+)">', r.text)
                if r.status_code != 200 or not consent:
                    raise RuntimeError(f"the sign-in stopped at {url}: {r.status_code} {r.text[:300]}")
                url, form = consent.group(1), {"consent": consent.group(2), "decision": "allow"}
        raise RuntimeError("the sign-in did not end")

    async def callback():
        params = landed["url"].params
        if "error" in params:
            raise RuntimeError(f"{params['error']}: {params.get('error_description')}")
        return AuthorizationCodeResult(code=params["code"], state=params.get("state"), iss=params.get("iss"))

    provider = OAuthClientProvider(
        server_url=mcp_url,
        client_metadata=OAuthClientMetadata(
            client_name="Python desk",
            redirect_uris=[redirect_uri],
            grant_types=["authorization_code"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=MemoryStorage(),
        redirect_handler=browse,
        callback_handler=callback,
        client_metadata_url=metadata_url,
    )
    return await call_tool(provider, mcp_url, tool, args)


if __name__ == "__main__":
    report(main(*sys.argv[1:5], json.loads(sys.argv[5])))
