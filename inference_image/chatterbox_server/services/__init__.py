"""Orchestration between the HTTP layer and the engine, voice library and admission control."""
