"""Imported for its side effect, by the cold-worker fork server only.

The openai-whisper engine builds its model on torch's meta device (no random
initialisation). The first meta-device operation pulls in torch's Python
decompositions - about a thousand modules, seconds of imports - so the fork
server does it once and every worker forked from it starts with them loaded.
"""

import torch

with torch.device("meta"):
    torch.arange(4, dtype=torch.float32).exp().sin()
