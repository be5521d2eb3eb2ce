"""A fault-injecting TCP proxy: the outages the till must survive, switchable at run time.

Tests and the demo put it between the till and its back-end, and in front of a
stand-in for the internet probe target, then switch its mode while the till runs:

    python -m tilld.sim.faultproxy --listen 127.0.0.1:0 --target 127.0.0.1:8080 \\
        --control 127.0.0.1:0 [--mode pass]

It prints ``listening=HOST:PORT`` and ``control=HOST:PORT`` on stdout once both
accept connections (port 0 picks a free port; the real one is printed) and
stops on SIGTERM or SIGINT. Without ``--target`` it is a switch for
connect-only probes: in ``pass`` it accepts each connection and closes it at once.

Modes (``FaultProxy.set_mode(name, **options)`` or ``POST /mode``)
    pass       Forward bytes both ways.
    refuse     Nothing listens: connects get ECONNREFUSED and open connections
               are reset. The port stays bound (not listening) meanwhile, so
               nothing else takes it and leaving refuse listens on it again.
    blackhole  Accept connections but move nothing either way, not even a
               close; open connections stall as well. What was held moves on
               once the mode leaves blackhole, as on a network path that heals
               under TCP's retransmissions.
    halfdead   A half-dead server: connections open when the mode began go on
               forwarding both ways, but new ones are accepted and then held
               like blackhole's, never reaching the target. A client with a
               pool of keep-alive connections sees some requests answered and
               others hang. What was held moves on once the mode leaves
               halfdead; a connection accepted under halfdead counts as open
               (it passes) if halfdead is left and entered again.
    reset      Forward the request, then reset the connection (SO_LINGER 0,
               so RST) once ``after_bytes`` (default 10) bytes of the response
               have reached the client. A response no longer than that passes.
    slow       Forward, holding every chunk either way for ``delay_s`` (1.0).
    latency    A long link: forward, each chunk to the target arriving ``up_s``
               (0.025) late and each to the client ``down_s`` (0.025) late,
               plus a random 0..``jitter_s`` (0.005), never overtaking the
               chunk before it; the reader goes on reading meanwhile, so the
               link still carries a full stream. A new connection's first
               request waits a round trip more (``up_s + down_s``), the cost
               of TCP's handshake. Chunks already in flight when the mode
               changes arrive first, in order, then the new mode applies.
    http500    Answer each request with ``500 Internal Server Error``, a JSON
    http401    body and ``Connection: close`` (401 adds ``WWW-Authenticate``),
               without contacting the target.

Which connections a change reaches
    Every connection looks at the current mode for each chunk it moves, so a
    change reaches open keep-alive connections too, not only new ones: refuse
    resets them at once, blackhole stalls them, slow and latency delay their
    next chunk, http500/http401 answer their next request, reset cuts the
    response to their next request. Only halfdead leaves them be, which is its
    point: it holds the connections accepted after it began, and those alone. The
    proxy does not parse HTTP while forwarding, so "next request" means the
    next bytes the client sends; with pipelined requests an error answer can
    follow a half-sent response.

Control API (HTTP/1.1 on its own port, JSON, ``Connection: close``)
    GET  /mode   200 ``{"mode": "slow", "delay_s": 1.0}`` (the mode's options included)
    POST /mode   body ``{"mode": "reset", "after_bytes": 5}``; 200 with the new
                 mode as GET /mode shows it; 400 ``{"error": "invalid-mode", ...}``
                 for an unknown mode or option; 503 ``cannot-listen`` if the port
                 cannot be listened on again after refuse (the mode stays refuse)
    GET  /stats  the mode, open connections, bytes in flight on latency's
                 delay lines and, per mode, connections accepted and bytes
                 moved to the target and to the client

The package, one seam per module
    modes.py    the modes, their options (``Mode.parse``) and the traffic counters
    link.py     one proxied connection and how it ends (closed, or reset with RST)
    delay.py    latency's delay line: chunks in flight, in order, each on its due time
    proxy.py    ``FaultProxy``: listening, accepting, forwarding, switching modes
    answers.py  the little HTTP the ``http500``/``http401`` answers need
    control.py  the control API, served by drivers/sim/control.py
    command.py  the command line (``python -m tilld.sim.faultproxy``, ``tilld sim proxy``)
"""

# The package's face, as the one module offered it (``X as X``: re-exported).
from .command import add_proxy_command as add_proxy_command
from .command import main as main
from .command import parse_address as parse_address
from .command import serve as serve
from .control import ControlApi as ControlApi
from .modes import MODES as MODES
from .modes import InvalidMode as InvalidMode
from .modes import Mode as Mode
from .modes import Traffic as Traffic
from .proxy import FaultProxy as FaultProxy
