"""chatterbox_engine: our own inference implementation of Resemble AI's Chatterbox TTS.

Loads the official checkpoint files unchanged and reproduces upstream chatterbox-tts 0.1.7.
"""

SAMPLE_RATE = 24_000
