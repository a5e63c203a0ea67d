"""An MCP server (Model Context Protocol, the `mcp` SDK) so that an assistant can deploy and
debug apps: tools `list_apps`, `status`, `deploy`, `logs`, `reboot`, `set_secrets` and
`delete` (`tools.py`).

    STCLOUD_TOKEN=stc_... python -m supervisor.mcp --url https://cloud.example.org

It speaks MCP over stdio (the assistant starts it on the user's machine) and is a thin
client of the REST API (`supervisor.api_client`) with the user's own API token: every tool
call is one or a few `/api/v1` requests, so the token's scopes, its owner's workspace
roles, the rate limit and the log masking are the API's, and the server holds no database
session and no secret of the platform. A tool the token may not use answers with the API's
reason and what to do (an error result, not a crash of the session).
"""
