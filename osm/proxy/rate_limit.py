"""Local rate limiting: the token buckets of Envoy's local_ratelimit filters.

The one idea: a bucket is the state of one configured limit (`model.LocalRateLimit`,
whose ``scope`` says where it is configured), kept by the runtime across configuration
updates for as long as the same limit is configured in the same place (`carry_over`),
as Envoy keeps a filter's bucket while its resource is unchanged. Refilling is lazy and
discrete, as Envoy's timer fills: ``tokens_per_fill`` per whole ``fill_interval`` since
the last fill, up to ``max_tokens``. Time comes from the caller (a monotonic clock).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from osm.proxy import model


class TokenBucket:
    """One limit's tokens; starts full. Not thread-safe (one event loop)."""

    def __init__(self, limit: model.LocalRateLimit, now: float) -> None:
        self._max = limit.max_tokens
        self._per_fill = limit.tokens_per_fill
        self._interval = limit.fill_interval
        self._last_fill = now
        self.tokens = limit.max_tokens

    def take(self, now: float) -> bool:
        """Takes a token if there is one (after the fills due by ``now``)."""
        if self._interval > 0:
            fills = int((now - self._last_fill) // self._interval)
            if fills > 0:
                self.tokens = min(self._max, self.tokens + fills * self._per_fill)
                self._last_fill += fills * self._interval
        if self.tokens <= 0:
            return False
        self.tokens -= 1
        return True


def limits_of(config: model.ProxyConfig) -> Iterable[model.LocalRateLimit]:
    """Every limit ``config`` holds: filter chains', routes' (a virtual host's limit is
    on each of its routes), inline route configurations' included."""
    for listener in config.listeners.values():
        chains = list(listener.filter_chains)
        if listener.default_filter_chain is not None:
            chains.append(listener.default_filter_chain)
        for chain in chains:
            if chain.rate_limit is not None:
                yield chain.rate_limit
            terminal = chain.terminal
            if isinstance(terminal, model.HttpConnectionManager) and terminal.route_config:
                yield from _route_limits(terminal.route_config)
    for route_config in config.route_configs.values():
        yield from _route_limits(route_config)


def _route_limits(route_config: model.RouteConfig) -> Iterable[model.LocalRateLimit]:
    for host in route_config.virtual_hosts:
        for route in host.routes:
            if route.rate_limit is not None:
                yield route.rate_limit


def carry_over(
    old: Mapping[model.LocalRateLimit, TokenBucket], config: model.ProxyConfig, now: float
) -> dict[model.LocalRateLimit, TokenBucket]:
    """The buckets of ``config``: those of ``old`` still configured, new full ones for
    the others."""
    result: dict[model.LocalRateLimit, TokenBucket] = {}
    for limit in limits_of(config):
        if limit not in result:
            found = old.get(limit)
            result[limit] = found if found is not None else TokenBucket(limit, now)
    return result
