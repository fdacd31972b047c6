"""Inference providers (Bedrock, the remote OpenAI-compatible family, llama-cpp)."""
