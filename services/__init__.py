"""Mesh LLM: pooled GPUs behind one OpenAI-compatible API."""

import os

# Our processes start children (llama-server, the services) with fork+exec while gRPC
# threads run; gRPC's fork handlers do nothing useful there and only log a warning.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
