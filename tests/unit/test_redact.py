"""The generic secret masker (inspect) and scrubber (every error message)."""

from __future__ import annotations

import secrets

from llamda.errors import UpstreamUnavailableError
from llamda.redact import MASK, mask_config, remember, scrub


def test_masks_by_key_name_container_shape_and_url_credentials() -> None:
    config = {
        "url": "https://user:pw@host.example/v1?key=abc&sig=def#frag",
        "api_key": "plain-looking",
        "extra_headers": {"x-team": "anything", "Authorization": "Bearer x"},
        "nested": {"accessKeyId": "AKIAABCDEFGHIJKLMNOP", "password": "hunter22"},
        "random": secrets.token_hex(20),
        "model_map": {"m": "meta-llama/Llama-3.3-70B-Instruct-Turbo"},
        "keywords": ["llama"],
        "api_key_parameter": "/llamda/key",
        "timeout_seconds": 5,
        "empty_token": "",
    }
    masked = mask_config(config)
    assert masked["url"] == f"https://{MASK}@host.example/v1?key={MASK}&sig={MASK}#{MASK}"
    assert masked["api_key"] == MASK
    assert masked["extra_headers"] == {"x-team": MASK, "Authorization": MASK}
    assert masked["nested"] == {"accessKeyId": MASK, "password": MASK}
    assert masked["random"] == MASK
    # What is not secret stays readable.
    assert masked["model_map"] == config["model_map"] and masked["keywords"] == ["llama"]
    assert masked["api_key_parameter"] == "/llamda/key" and masked["timeout_seconds"] == 5
    assert masked["empty_token"] == ""


def test_error_messages_are_scrubbed_whenever_set() -> None:
    remember(["config-secret-value"])
    error = UpstreamUnavailableError(
        "x: config-secret-value; Illegal header value b'Bearer abc\\ndef'; "
        "at https://u:p@h.example/?token=t0k3n; key sk-proj-abcdefgh123"
    )
    for leaked in ("config-secret-value", "abc\\ndef", "u:p@", "t0k3n", "sk-proj-abcdefgh123"):
        assert leaked not in error.message and leaked not in str(error)
        assert leaked not in str(error.to_dict())
    error.message = "all providers failed: config-secret-value"
    assert "config-secret-value" not in error.message
    assert scrub("nothing to hide here") == "nothing to hide here"
