"""The simple repository API's names (PEP 503, 691, 700): one spelling for every stage.

The index writes these into its pages, the web negotiates them, the fetch stage and the
fallback ask upstream for them.
"""

from __future__ import annotations

from typing import Final

API_VERSION: Final = "1.1"  # PEP 700: upload-time, versions, size
HTML_MEDIA_TYPE: Final = "text/html"
V1_HTML_MEDIA_TYPE: Final = "application/vnd.pypi.simple.v1+html"
V1_JSON_MEDIA_TYPE: Final = "application/vnd.pypi.simple.v1+json"
LATEST_PREFIX: Final = "application/vnd.pypi.simple.latest+"
