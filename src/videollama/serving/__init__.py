"""OpenAI-compatible HTTP serving (`videollama serve`); needs the `serve` extra (fastapi, uvicorn).

```python
from videollama.serving import ServerConfig, create_app
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from videollama.serving.openai_api import ServerConfig, create_app

__all__ = ["ServerConfig", "create_app"]


def __getattr__(name: str) -> Any:  # lazy: importing the package must not need fastapi
    if name in __all__:
        from videollama.serving import openai_api

        return getattr(openai_api, name)
    raise AttributeError(name)
