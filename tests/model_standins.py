"""Local HTTP stand-ins of the model APIs the agent CLIs talk to, on 127.0.0.1.

Each stand-in plays one scripted conversation, the way a model would: its first answer asks the
CLI to write a file with its own file-writing tool, and once the CLI sends the tool's result back,
it answers in text and stops. Requests outside the conversation (titles, summaries, token counts,
"who speaks next" checks) get short valid answers. Only as much of each API as the CLIs use is
implemented: Anthropic Messages (Claude Code), OpenAI Responses (Codex), Gemini
`generateContent` (Gemini CLI) and OpenAI Chat Completions (aider, through litellm).

Every request is recorded (path and JSON body), so the tests can say what the CLI sent.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FILE_CONTENT = "written by the agent through its own tool\n"
FINAL_TEXT = "Done: the file is written."
USAGE = {"input": 1200, "output": 80}


@dataclass
class Conversation:
    """What the model does: write `path` (relative to the agent's work tree) with `content`,
    then say it is done. Tools that want absolute paths get one: the work tree is found in what
    the CLI tells the model about its environment (`workspaces`: where work trees are made)."""

    path: str
    content: str = FILE_CONTENT
    workspaces: str | None = None
    refuse: bool = False  # answer every call 401, as an API that does not take the key
    requests: list[tuple[str, dict]] = field(default_factory=list)
    tool_calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, path: str, body: dict) -> None:
        with self.lock:
            self.requests.append((path, body))

    def absolute(self, body: dict) -> str:
        if self.workspaces:
            found = re.search(re.escape(self.workspaces) + r"/[^/\"\s\\]+/work", json.dumps(body))
            if found:
                return f"{found.group(0)}/{self.path}"
        return self.path


def _sse(handler: BaseHTTPRequestHandler, events: list[tuple[str | None, dict]]) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.send_header("Cache-Control", "no-cache")
    handler.send_header("Connection", "close")  # the stream ends when the connection does
    handler.end_headers()
    handler.close_connection = True
    for name, data in events:
        chunk = (f"event: {name}\n" if name else "") + f"data: {json.dumps(data)}\n\n"
        handler.wfile.write(chunk.encode())
        handler.wfile.flush()


def _json(handler: BaseHTTPRequestHandler, data: dict, status: int = 200) -> None:
    body = json.dumps(data).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


# ----------------------------------------------------------------------------- Anthropic


def _anthropic_has_tool_result(body: dict) -> bool:
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, list) and any(
            isinstance(part, dict) and part.get("type") == "tool_result" for part in content
        ):
            return True
    return False


def _anthropic_tool(body: dict) -> str | None:
    names = [t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)]
    for wanted in ("Write", "write_file", "str_replace_based_edit_tool"):
        if wanted in names:
            return wanted
    return None


def anthropic(handler, conversation: Conversation, body: dict) -> None:
    model = body.get("model", "claude-standin")
    message_id = f"msg_{uuid.uuid4().hex[:20]}"
    tool = _anthropic_tool(body)
    if tool and not _anthropic_has_tool_result(body):
        conversation.tool_calls += 1
        blocks = [
            {
                "type": "tool_use",
                "id": f"toolu_{uuid.uuid4().hex[:20]}",
                "name": tool,
                "input": {
                    "file_path": conversation.absolute(body),
                    "content": conversation.content,
                },
            }
        ]
        stop = "tool_use"
    else:
        blocks = [{"type": "text", "text": FINAL_TEXT}]
        stop = "end_turn"
    usage = {"input_tokens": USAGE["input"], "output_tokens": USAGE["output"]}
    if not body.get("stream"):
        _json(
            handler,
            {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": blocks,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": usage,
            },
        )
        return
    events: list[tuple[str | None, dict]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": USAGE["input"], "output_tokens": 1},
                },
            },
        )
    ]
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            start = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        events += [
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            ),
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": index}),
        ]
    events += [
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": USAGE["output"]},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    _sse(handler, events)


# ----------------------------------------------------------------------------- OpenAI Responses


def _responses_has_tool_output(body: dict) -> bool:
    return any(
        isinstance(item, dict)
        and item.get("type") in ("function_call_output", "custom_tool_call_output")
        for item in body.get("input") or []
    )


def _responses_tools(body: dict) -> dict[str, dict]:
    """Every tool offered, top level or inside namespaces (and inside `additional_tools` input
    items, where Codex's code mode puts them)."""
    tools: dict[str, dict] = {}

    def collect(entries):
        for tool in entries or []:
            if not isinstance(tool, dict):
                continue
            if tool.get("type") == "namespace":
                collect(tool.get("tools"))
            elif tool.get("name"):
                tools[tool["name"]] = tool

    collect(body.get("tools"))
    for item in body.get("input") or []:
        if isinstance(item, dict) and item.get("type") == "additional_tools":
            collect(item.get("tools"))
    return tools


def _apply_patch_text(path: str, content: str) -> str:
    lines = [f"+{line}" for line in content.rstrip("\n").split("\n")]
    return "\n".join(["*** Begin Patch", f"*** Add File: {path}", *lines, "*** End Patch"])


def _responses_tool_call(conversation: Conversation, tools: dict[str, dict]) -> dict | None:
    call_id = f"call_{uuid.uuid4().hex[:16]}"
    if "exec" in tools and tools["exec"].get("type") == "custom":
        # Codex's code mode: one JavaScript cell that calls the nested apply_patch tool
        patch = _apply_patch_text(conversation.path, conversation.content)
        source = f"const result = await tools.apply_patch({json.dumps(patch)});\ntext(result);"
        return {
            "type": "custom_tool_call",
            "id": f"ctc_{call_id}",
            "call_id": call_id,
            "name": "exec",
            "input": source,
            "status": "completed",
        }
    if "apply_patch" in tools:
        patch = _apply_patch_text(conversation.path, conversation.content)
        if tools["apply_patch"].get("type") == "custom":
            return {
                "type": "custom_tool_call",
                "id": f"ctc_{call_id}",
                "call_id": call_id,
                "name": "apply_patch",
                "input": patch,
                "status": "completed",
            }
        return {
            "type": "function_call",
            "id": f"fc_{call_id}",
            "call_id": call_id,
            "name": "apply_patch",
            "arguments": json.dumps({"input": patch}),
            "status": "completed",
        }
    for name in ("shell", "exec_command", "shell_command"):
        if name in tools:
            script = f"printf %s {json.dumps(conversation.content)} > {conversation.path}"
            if name == "exec_command":
                arguments = {"cmd": script}
            elif name == "shell_command":
                arguments = {"command": script}
            else:
                arguments = {"command": ["bash", "-lc", script]}
            return {
                "type": "function_call",
                "id": f"fc_{call_id}",
                "call_id": call_id,
                "name": name,
                "arguments": json.dumps(arguments),
                "status": "completed",
            }
    return None


def responses(handler, conversation: Conversation, body: dict) -> None:
    response_id = f"resp_{uuid.uuid4().hex[:16]}"
    item = None
    if not _responses_has_tool_output(body):
        item = _responses_tool_call(conversation, _responses_tools(body))
    if item is not None:
        conversation.tool_calls += 1
    else:
        item = {
            "type": "message",
            "id": f"msg_{uuid.uuid4().hex[:16]}",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": FINAL_TEXT, "annotations": []}],
        }
    usage = {
        "input_tokens": USAGE["input"],
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": USAGE["output"],
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": USAGE["input"] + USAGE["output"],
    }
    response = {
        "id": response_id,
        "object": "response",
        "status": "in_progress",
        "model": body.get("model", "standin"),
        "output": [],
    }
    events = [
        ("response.created", {"type": "response.created", "response": response}),
        (
            "response.output_item.added",
            {"type": "response.output_item.added", "output_index": 0, "item": item},
        ),
    ]
    if item["type"] == "message":
        events.append(
            (
                "response.output_text.delta",
                {
                    "type": "response.output_text.delta",
                    "item_id": item["id"],
                    "output_index": 0,
                    "content_index": 0,
                    "delta": FINAL_TEXT,
                },
            )
        )
    events += [
        (
            "response.output_item.done",
            {"type": "response.output_item.done", "output_index": 0, "item": item},
        ),
        (
            "response.completed",
            {
                "type": "response.completed",
                "response": {**response, "status": "completed", "output": [item], "usage": usage},
            },
        ),
    ]
    _sse(handler, events)


# ----------------------------------------------------------------------------- Gemini


def _gemini_has_function_response(body: dict) -> bool:
    for content in body.get("contents") or []:
        for part in content.get("parts") or [] if isinstance(content, dict) else []:
            if isinstance(part, dict) and "functionResponse" in part:
                return True
    return False


def _gemini_functions(body: dict) -> set[str]:
    names = set()
    for tool in body.get("tools") or []:
        for declaration in tool.get("functionDeclarations") or [] if isinstance(tool, dict) else []:
            if isinstance(declaration, dict) and declaration.get("name"):
                names.add(declaration["name"])
    return names


def _fill(schema: dict):
    """A value that satisfies a (Gemini-style) JSON schema: side questions the CLI asks for
    JSON (routing, "who speaks next") get a plain valid answer ("user" where it is offered)."""
    kind = str(schema.get("type", "OBJECT")).upper()
    if schema.get("enum"):
        return "user" if "user" in schema["enum"] else schema["enum"][0]
    if kind == "OBJECT":
        return {name: _fill(sub) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "ARRAY":
        return []
    if kind in ("NUMBER", "INTEGER"):
        return 1
    if kind == "BOOLEAN":
        return False
    return "The task is done."


def _gemini_answer(conversation: Conversation, body: dict) -> dict:
    config = body.get("generationConfig") or {}
    if config.get("responseMimeType") == "application/json":
        schema = config.get("responseJsonSchema") or config.get("responseSchema") or {}
        parts: list[dict] = [{"text": json.dumps(_fill(schema))}]
    elif "write_file" in _gemini_functions(body) and not _gemini_has_function_response(body):
        conversation.tool_calls += 1
        call = {
            "name": "write_file",
            "args": {"file_path": conversation.absolute(body), "content": conversation.content},
        }
        parts = [{"functionCall": call}]
    else:
        parts = [{"text": FINAL_TEXT}]
    return {
        "candidates": [
            {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": {
            "promptTokenCount": USAGE["input"],
            "candidatesTokenCount": USAGE["output"],
            "totalTokenCount": USAGE["input"] + USAGE["output"],
        },
        "modelVersion": "gemini-standin",
    }


def gemini(handler, conversation: Conversation, body: dict, path: str) -> None:
    if path.endswith(":countTokens"):
        _json(handler, {"totalTokens": USAGE["input"]})
    elif path.endswith(":streamGenerateContent"):
        _sse(handler, [(None, _gemini_answer(conversation, body))])
    elif path.endswith(":generateContent"):
        _json(handler, _gemini_answer(conversation, body))
    elif path.endswith(":embedContent"):
        _json(handler, {"embedding": {"values": [0.0] * 8}})
    else:
        _json(handler, {"error": {"message": f"the stand-in has no {path}"}}, 404)


# ----------------------------------------------------------------------------- Chat Completions


def chat_completions(handler, conversation: Conversation, body: dict) -> None:
    """aider (through litellm), in its `whole` edit format: the file's path on a line, then the
    file's whole content in a fence; aider writes it."""
    if conversation.tool_calls:  # the edit was given once; later questions get text
        text = FINAL_TEXT
    else:
        conversation.tool_calls += 1
        text = f"{conversation.path}\n```\n{conversation.content}```\n"
    usage = {
        "prompt_tokens": USAGE["input"],
        "completion_tokens": USAGE["output"],
        "total_tokens": USAGE["input"] + USAGE["output"],
    }
    created = int(time.time())
    base = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "created": created,
        "model": body.get("model", "standin"),
    }
    if not body.get("stream"):
        _json(
            handler,
            {
                **base,
                "object": "chat.completion",
                "usage": usage,
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": text},
                    }
                ],
            },
        )
        return
    chunk = {**base, "object": "chat.completion.chunk"}
    events = [
        (
            None,
            {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}}]},
        ),
        (
            None,
            {
                **chunk,
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                "usage": usage,
            },
        ),
    ]
    _sse(handler, events)
    handler.wfile.write(b"data: [DONE]\n\n")


# ----------------------------------------------------------------------------- server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return {"_raw": raw.decode("utf-8", "replace")[:2000]}

    def do_POST(self):
        standin: StandIn = self.server.standin  # type: ignore[attr-defined]
        body = self._body()
        standin.conversation.record(self.path, body)
        path = self.path.split("?", 1)[0]
        if standin.conversation.refuse:
            error = {"type": "authentication_error", "message": "invalid x-api-key"}
            _json(self, {"type": "error", "error": error}, 401)
        elif path.endswith("/messages"):
            anthropic(self, standin.conversation, body)
        elif path.endswith("/chat/completions"):
            chat_completions(self, standin.conversation, body)
        elif path.endswith("/responses"):
            responses(self, standin.conversation, body)
        elif "/models/" in path and ":" in path.rsplit("/", 1)[-1]:
            gemini(self, standin.conversation, body, path)
        else:
            _json(self, {"error": {"message": f"the stand-in has no {path}"}}, 404)

    def do_GET(self):
        standin: StandIn = self.server.standin  # type: ignore[attr-defined]
        standin.conversation.record(self.path, {})
        _json(self, {"data": [], "object": "list"})


class StandIn:
    """A model API stand-in on 127.0.0.1 playing `conversation`."""

    def __init__(self, conversation: Conversation):
        self.conversation = conversation

    def __enter__(self) -> StandIn:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.standin = self  # type: ignore[attr-defined]
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def wait_quiet(seconds: float = 0.2) -> None:
    time.sleep(seconds)
