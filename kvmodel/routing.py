"""Request routing across serving instances: kept for compatibility, the code lives in
:mod:`kvmodel.policies.routing` (its registry is :data:`kvmodel.policies.ROUTING`)."""

from .policies.routing import (CLOSED_FORMS, LLMD, REGISTRY, ROUTING_POLICIES, Dynamo,  # noqa: F401
                               LeastLoaded, Mooncake, PrefixAffinity, PrefixAffinityBounded,
                               Random, RoundRobin, RouteRequest, RoutingPolicy, RoutingView,
                               SGLang, make_policy, policy_params)

__all__ = ["RouteRequest", "RoutingView", "RoutingPolicy", "ROUTING_POLICIES", "make_policy"]
