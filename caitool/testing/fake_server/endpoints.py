"""The fake server's API paths, one constant each, and the aliases `fault_endpoints` accepts.

A new endpoint group (e.g. files and batches) adds its paths here, its wire shapes in the API's module
(`openai_api.py`, `anthropic_api.py`), its handlers in `server.py`, and its routes in `server.build_app`.
"""

from __future__ import annotations

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
MESSAGES = "/v1/messages"
MODELS = "/v1/models"
GENERATION_ENDPOINTS = (CHAT, COMPLETIONS, MESSAGES)
ENDPOINT_ALIASES = {"chat": CHAT, "completions": COMPLETIONS, "messages": MESSAGES, "anthropic": MESSAGES}
