"""Property: whatever a pod spec holds, the model answers with problems, never a crash.

The pod specs come from a grammar of the fields the model reads (containers, env and its
sources, volumes and mounts, security contexts, probes), where any value may instead be
arbitrary JSON, so that both near-valid and absurd specs reach every check. `decode`
either builds a Pod, which survives a round trip, or raises `ValidationFailed`.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from osm.model import core, kinds
from osm.model.errors import ValidationFailed

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

anything = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=6), inner, max_size=2)
    ),
    max_leaves=5,
)


def small(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`strategy` behind a short repr (a grammar's nested reprs grow exponentially)."""
    return st.deferred(lambda: strategy)


def grammar(clean: bool) -> st.SearchStrategy[Any]:
    """Pod specs: `clean` ones from values the model accepts, with required fields and
    one handler or source each (their mistakes are in how the parts refer to each other:
    mount names, duplicate names and paths), the others with wrong values, any subset of
    fields and any JSON in any place."""

    def or_junk(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return strategy if clean else st.one_of(strategy, strategy, strategy, anything)

    def pick(good: list[Any], bad: list[Any]) -> st.SearchStrategy[Any]:
        values = st.sampled_from(good)
        return values if clean else values | st.sampled_from(bad) | st.text(max_size=6)

    def obj(
        required: dict[str, st.SearchStrategy[Any]] | None = None,
        **optional: st.SearchStrategy[Any],
    ) -> st.SearchStrategy[Any]:
        """An object with the `required` fields (unless not clean) and some `optional`."""
        if not clean:
            optional = {**(required or {}), **optional}
            required = {}
        shaped = st.fixed_dictionaries(
            {key: or_junk(value) for key, value in (required or {}).items()},
            optional={key: or_junk(value) for key, value in optional.items()},
        )
        if clean:
            return small(shaped)
        stray = st.dictionaries(st.sampled_from(["hostPath", "resourceFieldRef", "x"]), anything)
        return small(or_junk(st.builds(lambda a, b: {**b, **a}, shaped, stray | st.just({}))))

    def one_of(**choices: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        """An object with one of `choices` (unless not clean: any of them)."""
        if not clean:
            return obj(**choices)
        return st.one_of(*(obj({key: value}) for key, value in choices.items()))

    def some(strategy: st.SearchStrategy[Any], *, at_least: int = 0) -> st.SearchStrategy[Any]:
        return or_junk(st.lists(strategy, min_size=at_least if clean else 0, max_size=3))

    def merged(*parts: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        """The parts' fields in one object (or the first part that is not an object)."""

        def merge(values: tuple[Any, ...]) -> Any:
            for value in values:
                if not isinstance(value, dict):
                    return value
            return {key: item for value in values for key, item in value.items()}

        return small(st.tuples(*parts).map(merge))

    names = pick(["web", "init", "v", "config"], ["", "Web", "a_b"])
    keys = pick(["token", "tls.crt", "a-b_c"], ["a/b", "..data", ".", ""])
    paths = pick(["/etc", "/etc/v", "/", "/data/sub"], ["etc", "a/../b", "..x", ""])
    relative = pick(["file", "sub/file"], ["/etc", "a/../b", "..x"])
    field_paths = pick(
        [*core.ENV_FIELD_PATHS, "metadata.labels['app']", "metadata.annotations['a']"],
        ["metadata.annotations['A b']", "x['']", "metadata.labels"],
    )
    numbers = pick([1, 5, 0o644, 420, 511, 8080], [0, -1, 512, 2**31, 70000])
    ids = pick([0, 1000, 2**31 - 1], [-1, 2**31])
    modes = pick([0, 0o400, 0o644, 420, 0o777], [-1, 512])
    booleans = st.booleans()
    key_ref = obj({"name": names, "key": keys}, optional=booleans)
    items = some(obj({"key": keys, "path": relative}, mode=modes))
    volume = merged(
        obj({"name": names}),
        one_of(
            secret=obj({"secretName": names}, items=items, defaultMode=modes, optional=booleans),
            configMap=obj({"name": names}, items=items, defaultMode=modes, optional=booleans),
            emptyDir=obj(medium=pick(["", "Memory"], ["Disk"])),
        ),
    )
    handler = one_of(
        httpGet=obj(
            {"port": numbers | names},
            path=paths,
            scheme=pick(["HTTP", "HTTPS"], ["TCP"]),
            host=names,
            httpHeaders=some(obj({"name": names}, value=names)),
        ),
        tcpSocket=obj({"port": numbers | names}),
        exec=obj({"command": some(names, at_least=1)}),
        grpc=obj({"port": numbers}, service=names),
    )
    probe = merged(handler, obj(periodSeconds=numbers, failureThreshold=numbers))
    ready = merged(probe, obj(successThreshold=numbers))

    def container(*, init: bool) -> st.SearchStrategy[Any]:
        probes = (
            {} if init else {"livenessProbe": probe, "readinessProbe": ready, "startupProbe": probe}
        )
        return obj(
            {"name": names},
            command=some(names),
            args=some(names),
            workingDir=paths,
            env=some(
                obj({"name": names}, value=names)
                | obj(
                    {
                        "name": names,
                        "valueFrom": one_of(
                            fieldRef=obj({"fieldPath": field_paths}, apiVersion=pick(["v1"], [])),
                            secretKeyRef=key_ref,
                            configMapKeyRef=key_ref,
                        ),
                    }
                )
            ),
            envFrom=some(
                merged(
                    obj(prefix=names),
                    one_of(secretRef=obj({"name": names}), configMapRef=obj({"name": names})),
                )
            ),
            volumeMounts=some(
                obj({"name": names, "mountPath": paths}, readOnly=booleans, subPath=relative)
            ),
            securityContext=obj(
                runAsUser=ids,
                runAsGroup=ids,
                runAsNonRoot=booleans,
                privileged=booleans,
                capabilities=obj(add=some(names), drop=some(names)),
            ),
            ports=some(obj({"containerPort": numbers}, name=names)),
            **probes,
        )

    return obj(
        {"containers": some(container(init=False), at_least=1)},
        initContainers=some(container(init=True)),
        volumes=some(volume),
        securityContext=obj(runAsUser=ids, runAsGroup=ids, runAsNonRoot=booleans),
        restartPolicy=pick(["Always", "OnFailure", "Never"], ["Sometimes"]),
        terminationGracePeriodSeconds=numbers,
        hostNetwork=booleans,
        nodeName=names,
        serviceAccountName=names,
    )


pod_specs = grammar(clean=True) | grammar(clean=False)


def _pod(spec: object) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


def _deployment(spec: object) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {
            "selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "a"}}, "spec": spec},
        },
    }


@SETTINGS
@given(spec=pod_specs, in_deployment=st.booleans())
def test_any_pod_spec_is_a_pod_or_validation_failed(spec: object, in_deployment: bool) -> None:
    manifest = _deployment(spec) if in_deployment else _pod(spec)
    try:
        resource = kinds.decode(manifest)
    except ValidationFailed as failed:
        assert failed.errors, "refused without an error"
        assert all(problem.message and problem.path for problem in failed.errors)
        return
    assert kinds.decode(resource.to_dict()) == resource


@SETTINGS
@given(
    fields=st.dictionaries(
        st.sampled_from(["type", "data", "stringData", "binaryData", "immutable"]),
        anything | st.dictionaries(st.sampled_from(["token", "a/b", ".."]), anything),
    ),
    kind=st.sampled_from(["Secret", "ConfigMap"]),
)
def test_any_secret_or_config_map_is_one_or_validation_failed(
    fields: dict[str, Any], kind: str
) -> None:
    manifest = {"apiVersion": "v1", "kind": kind, "metadata": {"name": "s"}, **fields}
    try:
        kinds.decode(manifest)
    except ValidationFailed as failed:
        assert failed.errors
