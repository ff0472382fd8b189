"""bench/chain.py at a tiny shape: a real hub, steady stores with their hint sockets, the admin's orders and
a small storm in the middle; every figure the report promises is there, and every event reached the hub once."""

from __future__ import annotations

from bench import chain

# orders often enough that even the storm's short phase (about half a second here) holds several
TINY = {"steady_stores": 4, "rate": 40.0, "upload_every": 0.5, "order_every": 0.05, "storm_stores": 4,
        "events": 900, "before": 1.5, "after": 1.0}


def check_report(result: dict) -> None:
    assert result["events_held"] == result["events_expected"] == 4 + result["load"]["steady_events_held"] + 4 * 900
    storm = result["storm"]
    assert storm["amplification"] == 1.0 and storm["timeouts"] == 0
    assert storm["uploads"] >= 4 * 5          # 900 events in batches of the daemon's 200: five uploads each
    for name in chain.PHASES:
        phase = result["phases"][name]
        assert phase["orders"] > 0 and phase["orders_failed"] == 0, (name, phase)
        # each order was heard on its store's hint socket and found in a page the store pulled (maybe the
        # page of an earlier order's hint: then before its own hint)
        assert phase["orders_not_hinted"] == 0 and phase["orders_not_pulled"] == 0
        assert phase["order_push_ms_p50"] > 0 and phase["order_pulled_ms_p50"] > 0
        assert phase["hub_cpu_ms_per_event"] > 0
    for name in ("before", "after"):
        phase = result["phases"][name]
        assert phase["uploads"] > 0 and phase["upload_ms_p99"] > 0 and phase["steady_events_per_s"] > 0
    assert result["phases"]["during"]["storm_upload_ms_p99"] > 0
    assert result["steady"] == {"refused": 0, "failed": 0, "hint_sockets_lost": 0, "pulls_failed": 0,
                                "applied_unheard": 0}
    assert all(0 < rss < 1024 for rss in result["hub_peak_rss_mb"])
    assert result["load"]["loop_lag_ms_p99"] is not None and result["load"]["cpu_pct"] > 0
    assert result["met"]["every_event_held"] and result["met"]["amplification"]


def test_a_tiny_chain_on_sqlite():
    result = chain.run(**TINY)
    assert result["database"] == "sqlite" and result["hub_processes"] == 1
    check_report(result)


def test_a_tiny_chain_on_postgresql_with_two_hub_processes():
    result = chain.run(postgresql=2, **TINY)
    assert result["database"] == "postgresql" and result["hub_processes"] == 2
    assert result["postgres_cpu_s"] > 0 and len(result["hub_peak_rss_mb"]) == 2
    check_report(result)
