"""The engine's default sizes in one place, importable without torch (the service's settings
read them before torch loads)."""

MAX_BATCH = 8  # requests decoded together: the slots of the KV cache
MAX_CACHE_LEN = 8192  # KV positions per slot: the prompt and the frames of one text chunk
PREFIX_CACHE_MB = 512  # KV of voice-prompt prefixes kept for reuse (the service's default)
