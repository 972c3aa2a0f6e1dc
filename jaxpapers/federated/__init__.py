"""Federated learning building blocks.

* :mod:`.algorithm`: ``FederatedAlgorithm(init, apply)``, the round interface.
* :mod:`.partition`: split a labelled dataset among clients (IID, Dirichlet
  label skew, McMahan shards) with NumPy, deterministically per seed.
* :mod:`.clients`: clients' rows packed into masked blocks and laid out on a
  ``clients`` mesh axis, so aggregating sufficient statistics is a ``psum``.
"""

from jaxpapers.federated import algorithm, clients, partition
from jaxpapers.federated.algorithm import FederatedAlgorithm, ServerState
from jaxpapers.federated.clients import (
    CLIENTS_AXIS,
    ClientBlocks,
    clients_mesh,
    federated_sum,
    pack,
    per_client_sum,
    process_clients,
)
from jaxpapers.federated.partition import describe, dirichlet, iid, shards

__all__ = [
    "CLIENTS_AXIS",
    "ClientBlocks",
    "FederatedAlgorithm",
    "ServerState",
    "algorithm",
    "clients",
    "clients_mesh",
    "describe",
    "dirichlet",
    "federated_sum",
    "iid",
    "pack",
    "partition",
    "per_client_sum",
    "process_clients",
    "shards",
]
