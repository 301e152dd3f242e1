"""ICE consent freshness that survives a busy machine (RFC 7675).

aioice sends a consent check every ~5 s, waits 0.5 s for the answer, never resends it,
and gives the call up after 6 late answers in a row (aioice issue #58). On a loaded
2-core host an event loop that lags half a second for 30 s drops every call at once,
though each peer still answers. RFC 7675 asks for the opposite trade: consent expires
30 s after the last answer, however late the answers were. This module replaces
aioice's check with that rule, process-wide like the host addresses in `ice`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

import aioice.ice
from aioice import stun

log = logging.getLogger(__name__)

INTERVAL_S = 5.0  # between checks, randomized ±20% as RFC 7675 asks
EXPIRY_S = 30.0  # consent lasts this long after the last answer
# Each check is resent at 0.5, 1.5 and 3.5 s and waits until 7.5 s for its answer.
RETRANSMISSIONS = 3

_stock = aioice.ice.Connection.query_consent


async def _query_consent(connection: aioice.ice.Connection) -> None:
    """Checks every nominated pair; closes the connection once no answer came for
    EXPIRY_S. Runs as aioice's own consent task, so aioice still cancels it on close."""
    password = connection.remote_password
    assert password is not None  # aioice starts the task once connect() has it
    answered = time.monotonic()
    while True:
        await asyncio.sleep(INTERVAL_S * (0.8 + 0.4 * random.random()))
        for pair in list(connection._nominated.values()):
            request = connection.build_request(pair, nominate=False)
            try:
                await pair.protocol.request(
                    request, pair.remote_addr,
                    integrity_key=password.encode("utf8"),
                    retransmissions=RETRANSMISSIONS)
                answered = time.monotonic()
            except stun.TransactionError:
                pass
        if time.monotonic() - answered > EXPIRY_S:
            log.info("ICE consent expired: no answer for %.0f s", EXPIRY_S)
            connection._query_consent_task = None
            await connection.close()
            return


def patient_consent(enabled: bool = True) -> None:
    """Uses the RFC 7675 rule above for every ICE connection of the process (server
    and replay client alike); `False` restores aioice's own check."""
    chosen = _query_consent if enabled else _stock
    aioice.ice.Connection.query_consent = chosen  # type: ignore[method-assign,assignment]
