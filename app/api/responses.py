"""The JSON response class for large decision payloads.

One patient against every shipped rule set is ~200 kB of JSON (each decision carries its
criteria, trace, risks, outcomes and full citations, as DESIGN.md requires). The standard
library encoder spent ~3.4 ms on that, more than evaluating it; orjson takes a tenth of that.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from app.engine import present


class FastJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return present.render(content)
