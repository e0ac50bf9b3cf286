"""``HTMLView``: a rendered dashboard page that displays inline in Jupyter."""
from __future__ import annotations


class HTMLView:
    """A rendered page that displays inline in Jupyter (an isolated ``<iframe srcdoc>``)."""

    def __init__(self, html: str, height: int = 640):
        self.html, self.height = html, height

    def _repr_html_(self) -> str:
        from html import escape

        return (f'<iframe srcdoc="{escape(self.html, quote=True)}" style="width:100%;height:{self.height}px;'
                f'border:1px solid #ddd" title="interp dashboard"></iframe>')

    def __str__(self) -> str:
        return self.html
