"""chatterbox_server: the OpenAI-compatible FastAPI inference server."""
