"""Test doubles that stand in for external services (an OpenAI-compatible LM server)."""
