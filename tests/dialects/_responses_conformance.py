"""What every Responses stream must be: each payload one of the openai SDK's typed events, in
the order the API streams them."""

from __future__ import annotations

from typing import Any

from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
TERMINAL = ("response.completed", "response.incomplete", "response.failed")
# Events that add to an item, and need it added before and not yet done.
_ITEM_EVENTS = (
    "response.content_part.added",
    "response.content_part.done",
    "response.output_text.delta",
    "response.output_text.done",
    "response.reasoning_text.delta",
    "response.reasoning_text.done",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
)


def check_stream(documents: list[dict[str, Any]]) -> None:
    """Assert `documents` (decoded payloads, in order) form one well-ordered Responses stream."""
    assert documents, "an empty stream"
    for document in documents:
        event = EVENTS.validate_python(document)  # raises on an unknown type or a bad field
        assert event.type == document["type"]
    kinds = [document["type"] for document in documents]
    assert kinds[:2] == ["response.created", "response.in_progress"], kinds
    assert kinds[-1] in TERMINAL, kinds
    assert not any(kind in TERMINAL for kind in kinds[:-1]), kinds
    assert [document["sequence_number"] for document in documents] == list(range(len(documents)))
    response_id = documents[0]["response"]["id"]
    assert documents[0]["response"]["status"] == "in_progress"
    assert documents[0]["response"]["output"] == []
    assert documents[-1]["response"]["id"] == response_id
    open_items: dict[str, int] = {}  # item id -> output index
    done_items: list[dict[str, Any]] = []
    for document in documents[2:-1]:
        kind = document["type"]
        if kind == "response.output_item.added":
            item = document["item"]
            assert document["output_index"] == len(done_items), "items stream one at a time"
            assert not open_items, "an item was added while another was open"
            open_items[item["id"]] = document["output_index"]
        elif kind == "response.output_item.done":
            item = document["item"]
            assert open_items.pop(item["id"]) == document["output_index"]
            done_items.append(item)
        else:
            assert kind in _ITEM_EVENTS, kind
            assert open_items.get(document["item_id"]) == document["output_index"], document
    assert not open_items or kinds[-1] == "response.failed", "an item was never done"
    final = documents[-1]["response"]
    if kinds[-1] != "response.failed":
        assert final["output"] == done_items
        # The deltas add up to what the done item holds.
        for item in done_items:
            deltas = "".join(
                document["delta"]
                for document in documents
                if document.get("item_id") == item["id"] and "delta" in document
            )
            if item["type"] == "function_call":
                assert deltas == item["arguments"]
            elif item["type"] == "message":
                assert deltas == item["content"][0]["text"]
            else:
                assert deltas == item["content"][0]["text"]
