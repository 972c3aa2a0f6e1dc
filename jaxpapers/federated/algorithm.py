"""The federated algorithm interface: ``init`` builds the server state, ``apply`` runs a round.

The shape is the one fedjax made familiar: a federated algorithm is a pair of
plain functions bundled in a frozen dataclass, not a class hierarchy.

* ``init(*args, **kwargs) -> server_state`` builds the server's state (global
  model, accumulated statistics, round counter, ...).
* ``apply(server_state, clients) -> (server_state, diagnostics)`` runs one round
  over the given clients and returns the new server state and a dict of
  diagnostics (per-round metrics, per-client numbers for logs).

What ``clients`` is belongs to the algorithm: a list of per-client arrays, a
:class:`~jaxpapers.federated.clients.ClientBlocks` with a mesh, a sampler of
client ids. Both functions should be pure (explicit seeds or PRNG keys in the
state or the arguments), so a run is reproducible and a round can be checkpointed
by saving the server state.

Client work as init / step / final
----------------------------------
fedjax splits the client side of a round into ``client_init`` (state from the
server state), ``client_step`` (one batch) and ``client_final`` (what the client
sends back). Analytic (closed-form) algorithms such as AFL and its successors
are the degenerate, and fastest, case of that split:

* ``client_init``: zero sufficient statistics, e.g. ``XᵀX = 0``, ``XᵀY = 0``;
* ``client_step``: add one block of rows, ``XᵀX += xᵀ diag(m) x`` - a single
  pass over the client's data, no gradient steps, no dependence on other
  clients or on the order of the blocks;
* ``client_final``: the statistics themselves (or a local solve from them).

Because the statistics are sums, the server's aggregation is a plain sum, and
the whole round is one reduction over all clients' blocks:
:func:`jaxpapers.federated.clients.federated_sum` runs it with the clients laid
out on a ``clients`` mesh axis and the server's sum as a ``psum``;
:func:`~jaxpapers.federated.clients.per_client_sum` keeps each client's
statistics apart when the algorithm needs them (local solves, diagnostics). The
result is invariant to how the data is partitioned, which is the property
analytic FL papers test.

Example: the federated mean, with the client work written out (one pass
computing ``(sum, count)``; the server only adds):

>>> import numpy as np
>>> def init():
...     return {"mean": 0.0, "round": 0}
>>> def apply(state, clients):
...     stats = [(float(np.sum(c)), len(c)) for c in clients]  # client_step, one pass
...     total, count = (sum(s) for s in zip(*stats))  # the server sums
...     diagnostics = {"num_clients": len(clients), "num_rows": count}
...     return {"mean": total / count, "round": state["round"] + 1}, diagnostics
>>> federated_mean = FederatedAlgorithm(init=init, apply=apply)
>>> state = federated_mean.init()
>>> state, info = federated_mean.apply(state, [np.array([1.0, 2.0]), np.array([6.0])])
>>> state, info
({'mean': 3.0, 'round': 1}, {'num_clients': 2, 'num_rows': 3})
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

ServerState = Any
"""Whatever the algorithm keeps between rounds: usually a pytree of arrays."""


@dataclasses.dataclass(frozen=True)
class FederatedAlgorithm:
    """A federated algorithm as two pure functions.

    Attributes:
      init: builds the initial server state from the algorithm's arguments.
      apply: ``(server_state, clients) -> (new_server_state, diagnostics)``: one
        round over the given clients.
    """

    init: Callable[..., ServerState]
    apply: Callable[[ServerState, Any], tuple[ServerState, dict]]
