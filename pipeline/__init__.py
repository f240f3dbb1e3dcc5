"""jarvis-pipeline: supervisor, CLI, protocol schema and ring clients."""
