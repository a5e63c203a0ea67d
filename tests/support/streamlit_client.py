"""A minimal Streamlit browser stand-in for tests: open a session, run the script once.

Streamlit's websocket speaks second: after the upgrade it sends nothing until
the client sends a `BackMsg` with `rerun_script` set. Then it answers `new_session`,
`session_status_changed`, the page's `delta`s and `script_finished`.

    seen = await open_streamlit_session("ws://127.0.0.1:8080", "hello.localhost:8080")
    assert seen["new_session"] and "Hello" in " ".join(seen["texts"])

Tests only (it imports streamlit's protobuf classes; supervisor and backend never do).
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]  # no stubs
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ClientState_pb2 import ClientState
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

STREAM_PATH = "/_stcore/stream"
LEGACY_STREAM_PATH = "/stream"  # Streamlit before 1.18


def rerun_message(query_string: str = "", page_script_hash: str = "") -> bytes:
    """The BackMsg a browser sends to (re)run the script."""
    return BackMsg(rerun_script=ClientState(query_string=query_string,
                                            page_script_hash=page_script_hash)
                   ).SerializeToString()


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _top_level_fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, varint value or raw bytes) of a protobuf message's top level."""
    out: list[tuple[int, int | bytes]] = []
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(data, at)
            out.append((number, value))
        elif wire == 2:
            size, at = _varint(data, at)
            out.append((number, data[at:at + size]))
            at += size
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            out.append((number, data[at:at + width]))
            at += width
        else:
            raise ValueError(f"protobuf wire type {wire} is not handled here")
    return out


def parse_forward(data: bytes) -> ForwardMsg:
    """A ForwardMsg of any Streamlit release, read with the protobuf classes installed here.
    An element whose shape changed since (a dataframe of Streamlit 1.12, say) does not
    parse: that message keeps only its type (and a plain value such as script_finished)."""
    fwd = ForwardMsg()
    try:
        fwd.ParseFromString(data)
        return fwd
    except DecodeError:
        fwd = ForwardMsg()
    for number, value in _top_level_fields(data):
        field = ForwardMsg.DESCRIPTOR.fields_by_number.get(number)
        if field is None or field.containing_oneof is None:
            continue
        if field.message_type is not None:
            getattr(fwd, field.name).SetInParent()
        elif isinstance(value, int):
            setattr(fwd, field.name, value)
    return fwd


def _element_text(msg: ForwardMsg) -> tuple[str | None, str | None]:
    """(text, exception message) of a delta's new element, when it has one."""
    if msg.WhichOneof("type") != "delta" or msg.delta.WhichOneof("type") != "new_element":
        return None, None
    element = msg.delta.new_element
    kind = element.WhichOneof("type")
    if kind is None:
        return None, None
    body = getattr(element, kind)
    if kind == "exception":
        return None, f"{body.type}: {body.message}"
    text = getattr(body, "body", None)
    return (text if isinstance(text, str) and text else None), None


async def open_streamlit_session(base_ws_url: str, host: str, timeout: float = 30,
                                 *, cookies: dict[str, str] | None = None,
                                 protocols: tuple[str, ...] = ("streamlit",),
                                 query_string: str = "", origin: str | None = None,
                                 path: str = STREAM_PATH) -> dict[str, Any]:
    """Open `/_stcore/stream` on `base_ws_url` as a browser of `host` would, run the script.

    Streamlit before 1.18 serves its session on `/stream` and its browser code asks for no
    subprotocol: pass `path=LEGACY_STREAM_PATH, protocols=()` to be that browser (the
    messages used here keep their field numbers across those releases).

    `base_ws_url` is `ws://addr:port` (or `http://`, or a full URL ending in the stream
    path); `host` is the Host header to send (e.g. `hello.localhost:8080`), and the Origin
    is `http://<host>` so Streamlit's same-origin check passes through a proxy that keeps
    Host (pass `origin` to send another). Waits until the script finished (or `timeout`) and
    returns what it saw:

    protocol: subprotocol the server chose; new_session: bool; session_id: str;
    script_finished: final status name or None; messages: ForwardMsg types in order;
    texts: bodies of text-like elements (title, markdown, write…); exceptions: the
    script's exceptions; timed_out: bool; close_code: the websocket's close code.
    """
    url = base_ws_url.rstrip("/")
    if url.startswith("http"):
        url = "ws" + url[4:]
    if not url.endswith(path):
        url += path
    headers = {"Host": host, "Origin": origin or f"http://{host}"}
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    seen: dict[str, Any] = {"protocol": None, "new_session": False, "session_id": "",
                            "script_finished": None, "messages": [], "texts": [],
                            "exceptions": [], "timed_out": False, "close_code": None}
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, protocols=protocols, headers=headers,
                                      max_msg_size=0, autoping=True) as ws:
            seen["protocol"] = ws.protocol
            await ws.send_bytes(rerun_message(query_string))
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    seen["timed_out"] = True
                    break
                try:
                    msg = await ws.receive(timeout=left)
                except TimeoutError:
                    seen["timed_out"] = True
                    break
                if msg.type is not aiohttp.WSMsgType.BINARY:
                    break  # closed, closing or error
                fwd = parse_forward(msg.data)
                kind = fwd.WhichOneof("type")
                seen["messages"].append(kind)
                if kind == "new_session":
                    seen["new_session"] = True
                    seen["session_id"] = fwd.new_session.initialize.session_id
                text, exception = _element_text(fwd)
                if text:
                    seen["texts"].append(text)
                if exception:
                    seen["exceptions"].append(exception)
                if kind == "script_finished":
                    status = ForwardMsg.ScriptFinishedStatus.Name(fwd.script_finished)
                    if status != "FINISHED_EARLY_FOR_RERUN":
                        seen["script_finished"] = status
                        break
            await ws.close()
            seen["close_code"] = ws.close_code
    return seen
