"""The dashboard: pages for the cashier and the store manager, served by the daemon under /ui/.

Importing the page modules registers their pages (edge.ui.web.page); `routes()` is what the app adds.
"""

from edge.ui import (  # noqa: F401  # noqa: F401
    audit_pages,
    cashier,  # noqa: F401
    devices_pages,
    export_pages,
    login,  # noqa: F401 (registers its pages)
    orders_pages,
    overview,
    reports_pages,
    stock_pages,
    sync_pages,
)
from edge.ui.web import routes

__all__ = ["routes"]
