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
# Batch APIs (`batches.py`): OpenAI Files + Batches, Anthropic Message Batches. Not generation endpoints:
# each request inside a batch goes to CHAT, COMPLETIONS or MESSAGES through the same fault machine.
FILES = "/v1/files"
FILE = "/v1/files/{id}"
FILE_CONTENT = "/v1/files/{id}/content"
BATCHES = "/v1/batches"
BATCH = "/v1/batches/{id}"
BATCH_CANCEL = "/v1/batches/{id}/cancel"
MESSAGE_BATCHES = "/v1/messages/batches"
MESSAGE_BATCH = "/v1/messages/batches/{id}"
MESSAGE_BATCH_CANCEL = "/v1/messages/batches/{id}/cancel"
MESSAGE_BATCH_RESULTS = "/v1/messages/batches/{id}/results"
