"""The model's own chat template, rendered in a sandbox."""

from __future__ import annotations

import pytest

from tests.backends.onnx.tiny_models import CHAT_TEMPLATE
from tokenwire.backends.onnx.chat_template import ChatTemplate
from tokenwire.errors import InvalidRequestError
from tokenwire.requests import ChatMessage

STRICT = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}[SYS]{{ m['content'] }}[/SYS]"
    "{% elif (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant') }}"
    "{% else %}<{{ m['role'] }}>{{ m['content'] }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def test_system_message_lands_where_the_template_puts_it() -> None:
    text = ChatTemplate(CHAT_TEMPLATE).render(
        [ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")]
    )
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_bos_token_and_generation_prompt_are_passed_in() -> None:
    template = ChatTemplate(STRICT, bos_token="<s>")
    assert template.render([ChatMessage("user", "Hi")]) == "<s><user>Hi<assistant>"


def test_a_template_exception_becomes_an_invalid_request() -> None:
    template = ChatTemplate(STRICT)
    with pytest.raises(InvalidRequestError, match="must alternate"):
        template.render([ChatMessage("assistant", "x"), ChatMessage("assistant", "y")])


def test_templates_cannot_reach_python_internals() -> None:
    template = ChatTemplate("{{ messages.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(InvalidRequestError):
        template.render([ChatMessage("user", "x")])
