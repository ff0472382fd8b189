"""The dashboard: pages for the cashier and the store manager, served by the daemon under /ui/.

Importing the page modules registers their pages (edge.ui.web.page); `routes()` is what the app adds.
"""

from edge.ui import login  # noqa: F401 (registers its pages)
from edge.ui import cashier  # noqa: F401
from edge.ui import audit_pages, devices_pages, sync_pages  # noqa: F401
from edge.ui import overview, orders_pages, stock_pages  # noqa: F401
from edge.ui.web import routes

__all__ = ["routes"]
