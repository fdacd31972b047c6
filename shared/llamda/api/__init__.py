"""Request/response models: OpenAI- and Llama-Stack-compatible shapes. No logic."""
