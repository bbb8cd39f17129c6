import pytest

from tokenwire import ChatMessage, GenerationRequest


def test_request_needs_exactly_one_of_messages_and_prompt() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        GenerationRequest(model="m")
    with pytest.raises(ValueError, match="exactly one"):
        GenerationRequest(model="m", prompt="x", messages=(ChatMessage("user", "x"),))


def test_requests_get_unique_ids() -> None:
    a, b = GenerationRequest(model="m", prompt="x"), GenerationRequest(model="m", prompt="x")
    assert a.request_id != b.request_id
    assert a.request_id.startswith("req_")
