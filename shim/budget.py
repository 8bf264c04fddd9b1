"""How many upload bytes the shim holds at once, across all requests.

An upload is read whole before it is forwarded (the daemon needs its size in
the request header), so without a bound a crowd of large uploads waiting for a
busy daemon would each sit in the shim's memory (measured: 100 × 4.8 MB held
443 MB). Each request takes what it reads from the budget and gives it back
when it ends; a request that would pass the budget is refused with
`overloaded` (503 + Retry-After), like a full queue in the daemon.
"""

from __future__ import annotations

from shim.errors import HTTPError


class UploadBudget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def lease(self) -> "Lease":
        return Lease(self)


class Lease:
    """One request's share of the budget; a context manager that gives it all back."""

    def __init__(self, budget: UploadBudget) -> None:
        self.budget = budget
        self.held = 0

    def cover(self, received: int) -> None:
        """The request has now received `received` body bytes in all; hold as many.

        Counted from what reached the shim, not from what a parser has handed
        over: aiohttp's multipart reader keeps the last chunk back (up to the
        read size) while it looks for the boundary, and those bytes are held too.
        """
        if received > self.held:
            self.take(received - self.held)

    def take(self, n: int) -> None:
        b = self.budget
        if b.held + n > b.limit:
            raise HTTPError(
                "overloaded",
                f"the server is already holding {b.held >> 20} MiB of uploads (max_buffered_bytes "
                f"{b.limit >> 20} MiB); try again shortly",
            )
        b.held += n
        self.held += n

    def release(self) -> None:
        self.budget.held -= self.held
        self.held = 0

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
