"""The playground's "Tools & output" panel in Chromium: a tool call or a JSON answer streams in.

The OpenAI dialect is tested live, over every transport, against a scripted backend; the
Anthropic and Gemini dialects do not parse tools yet, so their request bodies are checked
through the page's own builders and their stream shapes through scripted responses.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pytest

from tests._support.backends import EventScriptBackend
from tests._support.server import running_server
from tests.playground._browser import Console, Traffic, open_playground
from tokenwire import create_app
from tokenwire.events import Event, Finish, TokenDelta, ToolCallDelta, Usage
from tokenwire.requests import OutputConstraint, ToolChoice

if TYPE_CHECKING:
    from playwright.sync_api import Page, Route

DELAY = 0.06  # seconds between scripted events: the page samples every 10 ms
WEATHER_ARGS = '{"city": "Paris", "unit": "celsius"}'
WEATHER_FRAGMENTS = ['{"city"', ': "Par', 'is", "un', 'it": "cel', 'sius"}']
TIME_TOOL = {
    "name": "get_time",
    "description": "The time in a time zone.",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
}
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temp": {"type": "number"}},
    "required": ["city", "temp"],
}
_FINAL = ",".join(f"#status[data-state={state}]" for state in ("done", "stopped", "error"))

# Every 10 ms, inside the page: each card of the newest answer as [name, arguments, state],
# and the answer's text; stops once the status is final.
_START_SAMPLING = """() => {
  const samples = window.tokenwireSamples = [];
  const timer = setInterval(() => {
    const turn = document.querySelector("#transcript li:last-child");
    samples.push({
      cards: turn ? Array.from(turn.querySelectorAll(".tool-call"), (card) => [
        card.querySelector(".tool-name").textContent,
        card.querySelector(".tool-args").textContent,
        card.dataset.state,
      ]) : [],
      text: document.getElementById("answer") ? document.getElementById("answer").textContent : "",
    });
    if (["done", "stopped", "error"].includes(document.getElementById("status").dataset.state)) {
      clearInterval(timer);
    }
  }, 10);
}"""


def pretty(text: str) -> str:
    """What the page shows for complete, valid JSON (JSON.stringify(value, null, 2))."""
    return json.dumps(json.loads(text), indent=2, ensure_ascii=False)


def serve(events: Sequence[Event]) -> tuple[EventScriptBackend, Any]:
    backend = EventScriptBackend(events, delay=DELAY)
    return backend, running_server(create_app(backend))


def send(page: Page, dialect: str, transport: str, prompt: str = "weather in Paris?") -> None:
    page.select_option("#dialect", dialect)
    page.select_option("#transport", transport)
    page.fill("#prompt", prompt)
    page.evaluate(_START_SAMPLING)
    page.click("#send")
    page.wait_for_selector(_FINAL)


def samples(page: Page) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = page.evaluate("() => window.tokenwireSamples")
    return found


def open_panel(page: Page) -> None:
    if page.get_attribute("#agent", "open") is None:
        page.click("#agent summary")


def fill_tools(page: Page, *extra: dict[str, Any]) -> None:
    open_panel(page)
    page.click("#tools-example")
    tools = json.loads(page.input_value("#tools"))
    page.fill("#tools", json.dumps([*tools, *extra]))


def badges(page: Page, selector: str) -> list[tuple[str, str | None]]:
    found: list[list[Any]] = page.eval_on_selector_all(
        selector, "(els) => els.map((el) => [el.textContent, el.dataset.valid ?? null])"
    )
    return [(text, valid) for text, valid in found]


@pytest.mark.parametrize(
    ("transport", "choice", "expected_choice", "finish"),
    [
        ("sse", "auto", ToolChoice("auto"), "tool_calls"),
        ("ndjson", "required", ToolChoice("required"), "tool_calls"),
        # OpenAI answers "stop" when tool_choice named the function.
        ("websocket", "tool:get_weather", ToolChoice("required", ("get_weather",)), "stop"),
    ],
)
def test_openai_tool_calls_stream_into_cards(
    page: Page,
    console: Console,
    transport: str,
    choice: str,
    expected_choice: ToolChoice,
    finish: str,
) -> None:
    events: list[Event] = [
        ToolCallDelta(0, id="call_1", name="get_weather"),
        *(ToolCallDelta(0, arguments=fragment) for fragment in WEATHER_FRAGMENTS),
        # The second call's arguments are cut short: not JSON.
        ToolCallDelta(1, id="call_2", name="get_time", arguments='{"zone": '),
        Finish("tool_calls", Usage(5, 7)),
    ]
    backend, server = serve(events)
    with server as url:
        open_playground(page, url)
        fill_tools(page, TIME_TOOL)
        page.select_option("#tool-choice", choice)
        send(page, "openai", transport)

    seen = samples(page)
    final = seen[-1]["cards"]
    assert final == [
        ["get_weather", pretty(WEATHER_ARGS), "valid"],
        ["get_time", '{"zone": ', "invalid"],
    ]
    # The first call's arguments were seen part-way, growing, before they were complete.
    growing = [s["cards"][0][1] for s in seen if s["cards"] and s["cards"][0][2] == "streaming"]
    assert any(0 < len(args) < len(WEATHER_ARGS) for args in growing), growing
    assert all(WEATHER_ARGS.startswith(args) for args in growing), growing
    assert [len(args) for args in growing] == sorted(len(args) for args in growing)
    assert badges(page, "#transcript li:last-child .tool-call .badge") == [
        ("valid JSON", "true"),
        ("invalid JSON", "false"),
    ]
    assert page.text_content("#finish") == finish
    assert page.get_attribute("#status", "data-state") == "done"
    assert page.is_hidden("#error")

    (request,) = backend.requests
    assert [tool.name for tool in request.tools] == ["get_weather", "get_time"]
    assert request.tools[0].parameters["required"] == ["city"]
    assert request.tool_choice == expected_choice
    assert request.constraint is None
    assert console.errors == []


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        (['{"city"', ': "Pa', 'ris", "te', 'mp": 2', "1.5}"], "valid"),
        (['{"city"', ": Paris"], "invalid"),
    ],
)
def test_json_schema_answer_streams_and_is_marked(
    page: Page, console: Console, traffic: Traffic, answer: list[str], verdict: str
) -> None:
    events: list[Event] = [*(TokenDelta(piece) for piece in answer), Finish("stop", Usage(3, 5))]
    backend, server = serve(events)
    with server as url:
        open_playground(page, url)
        open_panel(page)
        page.fill("#schema", json.dumps(SCHEMA))
        send(page, "openai", "sse", "weather as JSON")

    raw = "".join(answer)
    texts = [s["text"] for s in samples(page)]
    assert any(0 < len(text) < len(raw) for text in texts), texts
    shown = page.text_content("#answer")
    if verdict == "valid":
        assert shown == pretty(raw)
        assert badges(page, ".json-status") == [("valid JSON", "true")]
    else:
        assert shown == raw
        assert badges(page, ".json-status") == [("invalid JSON", "false")]
    assert page.text_content("#finish") == "stop"

    (request,) = backend.requests
    assert request.constraint == OutputConstraint("json_schema", schema=SCHEMA, name="answer")
    assert request.tools == ()
    (post,) = traffic.of("POST")
    body = json.loads(post.post_data or "")
    assert body["response_format"]["json_schema"]["strict"] is True
    assert "tools" not in body and "tool_choice" not in body
    assert console.errors == []


@pytest.mark.parametrize(
    ("field", "text", "message"),
    [
        ("#tools", '[{"name": "get_weather",', "Tools: not valid JSON"),
        ("#tools", '{"name": "get_weather"}', "Tools must be a JSON array"),
        ("#tools", '[{"name": "get weather"}]', 'Tool 1: "name" must be 1 to 64 letters'),
        ("#schema", '["type", "object"]', "The answer format must be a JSON Schema object"),
    ],
)
def test_broken_panel_json_shows_an_inline_error_and_sends_nothing(
    page: Page, traffic: Traffic, field: str, text: str, message: str
) -> None:
    backend, server = serve([TokenDelta("never"), Finish("stop")])
    with server as url:
        open_playground(page, url)
        open_panel(page)
        page.fill(field, text)
        page.click("#agent summary")  # the panel closes; Send must open it again to show the fault
        page.fill("#prompt", "hello")
        page.click("#send")
        assert message in (page.text_content("#agent-error") or "")
        assert page.is_visible("#agent-error")
        assert page.get_attribute(field, "aria-invalid") == "true"
        assert page.evaluate("() => document.activeElement.id") == field[1:]
        # Nothing was sent, and nothing of the turn was kept: Send retries it once fixed.
        assert backend.requests == []
        assert traffic.of("POST") == []
        assert page.locator("#transcript li").count() == 0
        assert page.input_value("#prompt") == "hello"
        assert page.get_attribute("#status", "data-state") == "idle"

        page.fill(field, "")  # fixed: the error goes as the field is edited
        assert page.is_hidden("#agent-error")
        assert page.get_attribute(field, "aria-invalid") is None
        page.click("#send")
        page.wait_for_selector(_FINAL)
    assert len(backend.requests) == 1


def test_tool_choice_lists_the_tools_and_is_off_without_them(page: Page) -> None:
    _, server = serve([Finish("stop")])
    with server as url:
        open_playground(page, url)
        open_panel(page)
        assert page.is_disabled("#tool-choice")
        fill_tools(page, TIME_TOOL)
        options = page.eval_on_selector_all("#tool-choice option", "(os) => os.map((o) => o.value)")
        assert options == ["auto", "required", "none", "tool:get_weather", "tool:get_time"]
        assert page.is_enabled("#tool-choice")
        page.select_option("#tool-choice", "tool:get_time")
        assert page.text_content("#agent-summary") == "(2 tools, get_time)"
        page.fill("#tools", "")
        assert page.is_disabled("#tool-choice")
        assert page.input_value("#tool-choice") == "auto"


AGENT = {
    "tools": [
        {
            "name": "get_weather",
            "description": "Weather now.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
        {"name": "ping"},
    ],
    "schema": SCHEMA,
}
HISTORY = [{"role": "user", "text": "hi"}]


def build(page: Page, dialect: str, choice: dict[str, str], **agent: Any) -> dict[str, Any]:
    body: dict[str, Any] = page.evaluate(
        "([dialect, agent]) => window.tokenwirePlayground.buildBody(dialect, 'm', "
        f"{json.dumps(HISTORY)}, 64, agent)",
        [dialect, {**AGENT, "choice": choice, **agent}],
    )
    return body


def test_openai_body_carries_tools_choice_and_schema(page: Page, echo_url: str) -> None:
    open_playground(page, echo_url)
    body = build(page, "openai", {"mode": "auto"})
    assert body["tools"] == [{"type": "function", "function": tool} for tool in AGENT["tools"]]
    assert body["tool_choice"] == "auto"
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True},
    }
    assert build(page, "openai", {"mode": "tool", "name": "ping"})["tool_choice"] == {
        "type": "function",
        "function": {"name": "ping"},
    }
    plain = build(page, "openai", {"mode": "auto"}, tools=[], schema=None)
    assert {"tools", "tool_choice", "response_format"}.isdisjoint(plain)


def test_anthropic_body_carries_tools_choice_and_schema(page: Page, echo_url: str) -> None:
    open_playground(page, echo_url)
    body = build(page, "anthropic", {"mode": "auto"})
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather now.",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
        # input_schema is required by the Messages API: a tool without parameters takes none.
        {"name": "ping", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}
    choices = {
        "auto": {"type": "auto"},
        "required": {"type": "any"},
        "none": {"type": "none"},
    }
    for mode, wire in choices.items():
        assert build(page, "anthropic", {"mode": mode})["tool_choice"] == wire
    named = build(page, "anthropic", {"mode": "tool", "name": "ping"})
    assert named["tool_choice"] == {"type": "tool", "name": "ping"}
    plain = build(page, "anthropic", {"mode": "auto"}, tools=[], schema=None)
    assert {"tools", "tool_choice", "output_config"}.isdisjoint(plain)


def test_gemini_body_carries_tools_choice_and_schema(page: Page, echo_url: str) -> None:
    open_playground(page, echo_url)
    body = build(page, "gemini", {"mode": "auto"})
    assert body["tools"] == [{"functionDeclarations": AGENT["tools"]}]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    assert body["generationConfig"] == {
        "maxOutputTokens": 64,
        "responseMimeType": "application/json",
        "responseJsonSchema": SCHEMA,
    }
    for mode, wire in {"required": "ANY", "none": "NONE"}.items():
        config = build(page, "gemini", {"mode": mode})["toolConfig"]
        assert config == {"functionCallingConfig": {"mode": wire}}
    named = build(page, "gemini", {"mode": "tool", "name": "ping"})["toolConfig"]
    assert named == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["ping"]}}
    plain = build(page, "gemini", {"mode": "auto"}, tools=[], schema=None)
    assert {"tools", "toolConfig"}.isdisjoint(plain)
    assert plain["generationConfig"] == {"maxOutputTokens": 64}


def sse(*payloads: dict[str, Any], named: bool = False) -> str:
    events = []
    for payload in payloads:
        head = f"event: {payload['type']}\n" if named else ""
        events.append(f"{head}data: {json.dumps(payload)}\n\n")
    return "".join(events)


# The official stream shapes, as the dialects will send them once they speak tools.
ANTHROPIC_STREAM = sse(
    {"type": "message_start", "message": {"id": "msg_1", "role": "assistant", "content": []}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "Let me look."},
    },
    {"type": "content_block_stop", "index": 0},
    {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
    },
    *(
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": part},
        }
        for part in WEATHER_FRAGMENTS
    ),
    {"type": "content_block_stop", "index": 1},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
    {"type": "message_stop"},
    named=True,
)
GEMINI_STREAM = sse(
    {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}],
                }
            }
        ]
    },
    {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [{"functionCall": {"name": "get_time", "args": {"zone": "CET"}}}],
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {"candidatesTokenCount": 6},
    },
)


@pytest.mark.parametrize(
    ("dialect", "pattern", "stream", "cards", "finish"),
    [
        (
            "anthropic",
            "**/v1/messages",
            ANTHROPIC_STREAM,
            [["get_weather", pretty(WEATHER_ARGS), "valid"]],
            "tool_use",
        ),
        (
            "gemini",
            "**/*:streamGenerateContent",
            GEMINI_STREAM,
            [
                ["get_weather", pretty('{"city": "Paris"}'), "valid"],
                ["get_time", pretty('{"zone": "CET"}'), "valid"],
            ],
            "STOP",
        ),
    ],
)
def test_anthropic_and_gemini_tool_call_streams_render_as_cards(
    page: Page,
    console: Console,
    echo_url: str,
    dialect: str,
    pattern: str,
    stream: str,
    cards: list[list[str]],
    finish: str,
) -> None:
    # The dialects do not send tool calls yet: the page gets the official shapes from here.
    def fulfil(route: Route) -> None:
        route.fulfill(status=200, content_type="text/event-stream", body=stream)

    open_playground(page, echo_url)
    page.route(pattern, fulfil)
    try:
        send(page, dialect, "sse")
    finally:
        page.unroute(pattern)
    assert samples(page)[-1]["cards"] == cards
    assert page.text_content("#finish") == finish
    assert page.get_attribute("#status", "data-state") == "done"
    if dialect == "anthropic":
        assert page.text_content("#answer") == "Let me look."
    assert console.errors == []


def test_agent_input_is_checked_before_any_body_is_built(page: Page, echo_url: str) -> None:
    open_playground(page, echo_url)
    check = """([tools, choice, schema]) => {
      try { return window.tokenwirePlayground.parseAgent(tools, choice, schema); }
      catch (e) { return {field: e.field, error: e.message}; }
    }"""
    openai_form = json.dumps([{"type": "function", "function": {"name": "ping"}}])
    assert page.evaluate(check, [openai_form, "tool:ping", ""]) == {
        "tools": [{"name": "ping"}],
        "choice": {"mode": "tool", "name": "ping"},
        "schema": None,
    }
    assert page.evaluate(check, ['[{"name": "ping"}]', "tool:pong", ""]) == {
        "field": "tool-choice",
        "error": 'Tool choice names "pong", which is not among the tools.',
    }
    twice = page.evaluate(check, ['[{"name": "ping"}, {"name": "ping"}]', "auto", ""])
    assert twice["field"] == "tools" and "used twice" in twice["error"]
    bad_params = page.evaluate(check, ['[{"name": "ping", "parameters": []}]', "auto", ""])
    assert bad_params["field"] == "tools" and '"parameters" must be' in bad_params["error"]
    assert page.evaluate(check, ["  ", "auto", " "]) == {
        "tools": [],
        "choice": {"mode": "auto"},
        "schema": None,
    }


@pytest.mark.parametrize(
    ("dialect", "transport", "finish"),
    [
        ("anthropic", "sse", "tool_use"),
        ("gemini", "sse", "STOP"),
        ("anthropic", "websocket", "tool_use"),
    ],
)
def test_anthropic_and_gemini_tool_calls_stream_live_into_cards(
    page: Page, console: Console, dialect: str, transport: str, finish: str
) -> None:
    """The page's Anthropic and Gemini bodies are accepted by the dialects, and their streams
    of a real server render as cards (Gemini sends each call whole)."""
    time_args = '{"zone": "Europe/Paris"}'
    events: list[Event] = [
        ToolCallDelta(0, id="call_1", name="get_weather"),
        *(ToolCallDelta(0, arguments=fragment) for fragment in WEATHER_FRAGMENTS),
        ToolCallDelta(1, id="call_2", name="get_time", arguments=time_args),
        Finish("tool_calls", Usage(5, 7)),
    ]
    backend, server = serve(events)
    with server as url:
        open_playground(page, url)
        fill_tools(page, TIME_TOOL)
        page.select_option("#tool-choice", "required")
        send(page, dialect, transport)

    final = samples(page)[-1]["cards"]
    assert final == [
        ["get_weather", pretty(WEATHER_ARGS), "valid"],
        ["get_time", pretty(time_args), "valid"],
    ]
    assert page.text_content("#finish") == finish
    assert page.is_hidden("#error")
    (request,) = backend.requests
    assert [tool.name for tool in request.tools] == ["get_weather", "get_time"]
    assert request.tool_choice == ToolChoice("required")
    assert console.errors == []
