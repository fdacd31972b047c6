"""Safety providers: llama-guard (a model via the Inference service), bedrock-guardrails
(ApplyGuardrail) and rules (local regex/keywords/PII detectors)."""
