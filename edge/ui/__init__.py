"""The dashboard: pages for the cashier and the store manager, served by the daemon under /ui/.

Importing the page modules registers their pages (edge.ui.web.page); `routes()` is what the app adds.
"""

from edge.ui import (  # noqa: F401  # noqa: F401
    audit_pages,
    cashier,  # noqa: F401
    cashier_members,
    cashier_orders_pages,
    count_pages,
    day_close_pages,
    devices_pages,
    export_pages,
    login,  # noqa: F401 (registers its pages)
    members_pages,
    orders_pages,
    overview,
    purchase_pages,
    reports_pages,
    shifts_pages,
    stock_pages,
    sync_pages,
    vocabulary,  # noqa: F401 (the words of stored values, in both languages)
)
from edge.ui.web import routes

__all__ = ["routes"]
