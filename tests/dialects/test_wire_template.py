import pytest

from tokenwire.dialects._wire import TextTemplate, dumps
from tokenwire.interfaces import Payload


def build(text: str) -> Payload:
    return Payload(
        dumps({"id": "x", "choices": [{"delta": {"content": text}}], "usage": None}), event="e"
    )


@pytest.mark.parametrize(
    "text", ["plain", 'quo"te\\', "line\nbreak\r\t", "é 世界 👋🏽", "\x00\x1f", "\ud800"]
)
def test_spliced_payload_equals_the_fully_encoded_one(text: str) -> None:
    assert TextTemplate(build).render(text) == build(text)


def test_a_template_must_hold_the_text_exactly_once() -> None:
    with pytest.raises(ValueError, match="exactly once"):
        TextTemplate(lambda text: Payload(dumps([text, text])))
