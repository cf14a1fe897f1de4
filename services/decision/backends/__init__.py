"""LLM backends of the decision stage: one request format (prompt.ChatPrompt), three ways to run it."""
