"""The per-provider-type field allow-list for providers without a wire-level fake here
(inline llama.cpp); the wire-level checks are in tests/integration/test_upstream_fields.py."""

from __future__ import annotations

import pytest

from llamda.api.inference import ChatCompletionRequest, CompletionRequest
from llamda.errors import BadRequestError, UnsupportedError
from llamda.providers.inference.config import LlamaCppConfig
from llamda.providers.inference.fields import upstream_fields
from llamda.providers.inference.llama_cpp import LlamaCppProvider

HI = [{"role": "user", "content": "hi"}]


def _provider(**config: object) -> LlamaCppProvider:
    settings = LlamaCppConfig(model_path="/x.gguf", **config)  # type: ignore[arg-type]
    return LlamaCppProvider("cpp", "inline::llama-cpp", settings)


def test_llama_cpp_gets_its_sampling_extras_under_its_own_names() -> None:
    request = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": HI, "top_k": 40, "repetition_penalty": 1.2, "min_p": 0.1}
    )
    args = _provider()._chat_args(request)
    assert args["top_k"] == 40 and args["repeat_penalty"] == 1.2 and args["min_p"] == 0.1
    assert "repetition_penalty" not in args


@pytest.mark.parametrize("kind", ["chat", "completion"])
def test_llama_cpp_refuses_fields_it_cannot_honour(kind: str) -> None:
    if kind == "chat":
        request = ChatCompletionRequest.model_validate(
            {"model": "m", "messages": HI, "logprobs": True}
        )
    else:
        request = CompletionRequest.model_validate({"model": "m", "prompt": "x", "logprobs": 2})  # type: ignore[assignment]
    with pytest.raises(UnsupportedError) as err:
        upstream_fields(request, "inline::llama-cpp")
    assert err.value.param == "logprobs"


def test_llama_cpp_image_urls_need_the_allow_list() -> None:
    def request(url: str) -> ChatCompletionRequest:
        content = [{"type": "image_url", "image_url": {"url": url}}]
        return ChatCompletionRequest.model_validate(
            {"model": "m", "messages": [{"role": "user", "content": content}]}
        )

    with pytest.raises(BadRequestError) as err:
        _provider()._chat_args(request("http://169.254.169.254/latest/meta-data/"))
    assert err.value.param == "messages[0].content[0].image_url.url"
    allowed = _provider(image_url_allow=["img.example.com"])
    assert allowed._chat_args(request("https://img.example.com/a.png"))["messages"]
    assert _provider()._chat_args(request("data:image/png;base64,AAAA"))["messages"]


@pytest.mark.parametrize(
    "provider_type", ["inline::llama-cpp", "remote::bedrock", "remote::ollama", "remote::tgi"]
)
def test_n_above_one_is_a_400_naming_a_single_choice_provider(provider_type: str) -> None:
    request = ChatCompletionRequest.model_validate({"model": "m", "messages": HI, "n": 2})
    with pytest.raises(UnsupportedError) as err:
        upstream_fields(request, provider_type)
    assert err.value.param == "n" and f"'{provider_type}'" in err.value.message
    one = ChatCompletionRequest.model_validate({"model": "m", "messages": HI, "n": 1})
    assert upstream_fields(one, provider_type)["n"] == 1
    assert upstream_fields(request, "vllm")["n"] == 2
