"""gatekeeper's second layer: a proxy in front of the engine's API socket.

contract.py  the request/verdict types the transport and the decision share;
server.py    the transport (asyncio + httptools): peer credentials, framing, relay, streams, audit;
vet.py       the decision: endpoint allowlist, body vetting, ownership, response redaction.
The transport never forwards a byte the decision has not seen.
"""
