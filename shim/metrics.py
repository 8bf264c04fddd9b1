"""Prometheus metrics for the shim (its own registry, so tests can build many apps)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,  # noqa: F401  (re-exported for app.py)
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from whisperd.core.replies import DaemonStatus

# The `*_created` timestamps double the output and no dashboard reads them.
disable_created_metrics()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "whisperd_http_requests", "HTTP requests by route and status",
            ["route", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "whisperd_http_request_seconds", "Time to answer a request",
            ["route"], registry=self.registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900),
        )
        self.in_flight = Gauge("whisperd_http_in_flight", "HTTP requests being answered", registry=self.registry)
        self.audio_seconds = Histogram(
            "whisperd_audio_seconds", "Seconds of audio per transcription",
            registry=self.registry, buckets=(1, 3, 5, 10, 30, 60, 300, 900, 3600),
        )
        self.uploads_held = Gauge("whisperd_upload_bytes_held",
                                  "Upload bytes the shim holds now (bounded by max_buffered_bytes)",
                                  registry=self.registry)
        self.queue = Gauge("whisperd_queue_depth", "Requests waiting in the daemon", registry=self.registry)
        self.workers = Gauge("whisperd_workers", "Workers in the daemon", ["kind"], registry=self.registry)
        # The daemon's own counters, mirrored at each status read (gauges: the daemon owns them).
        self.loading = Gauge("whisperd_workers_loading", "Cold workers still loading", registry=self.registry)
        self.spawns = Gauge("whisperd_cold_spawns", "Cold workers started since the daemon started",
                            registry=self.registry)
        self.crashes = Gauge("whisperd_worker_crashes", "Cold workers that died unexpectedly or failed to start",
                             registry=self.registry)
        self.events = Gauge("whisperd_daemon_events", "The daemon's event counters (retries, dropped requests...)",
                            ["event"], registry=self.registry)
        # Live speech (Realtime, Wyoming, whisperctl listen), from the daemon's `live` status.
        self.live_sessions = Gauge("whisperd_live_sessions", "Live sessions open in the daemon",
                                   registry=self.registry)
        self.live_counts = {
            key: Gauge(name, text, registry=self.registry) for key, name, text in (
                ("live_sessions", "whisperd_live_sessions_opened_total", "Live sessions opened"),
                ("live_refused", "whisperd_live_sessions_refused_total", "Live sessions refused (max_live_sessions)"),
                ("live_utterances", "whisperd_live_utterances_total", "Live utterances finished (finals)"),
                ("live_partials", "whisperd_live_partials_total", "Live partial transcripts sent"),
                ("finals", "whisperd_live_final_latency_seconds_count",
                 "Finals timed from the end of their speech"),
                ("final_latency_s_sum", "whisperd_live_final_latency_seconds_sum",
                 "Seconds from the end of speech to the final, summed"),
            )}
        self.daemon_up = Gauge("whisperd_daemon_up", "1 when the daemon answered the last status",
                               registry=self.registry)

    def observe_daemon(self, status: DaemonStatus) -> None:
        """Mirror a status the daemon answered."""
        self.daemon_up.set(1)
        self.queue.set(status.queue)
        self.loading.set(status.loading)
        self.spawns.set(status.spawns)
        self.crashes.set(status.crashes)
        for kind, count in status.workers.items():
            self.workers.labels(kind).set(count)
        for name, count in status.counters.items():
            self.events.labels(name).set(count)
        self.live_sessions.set(status.live.get("sessions") or 0)
        for key, gauge in self.live_counts.items():
            gauge.set(status.live.get(key) or 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
