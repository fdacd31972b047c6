"""Agents: the Responses API loop, Conversations and Prompts (Llama Stack's agents API)."""
