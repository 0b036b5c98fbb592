# TEMPORARY local stand-in until the patch branch is merged; never committed.
from typing import Any


class PatchError(ValueError):
    field = ""


class UnsupportedPatch(PatchError): ...


def apply_patch(content_type: str, target: Any, patch: Any, *, kind: str, builtin: bool) -> Any:
    import jsonpatch

    if "merge-patch" in content_type:

        def merge(t: Any, p: Any) -> Any:
            if not isinstance(p, dict):
                return p
            t = dict(t) if isinstance(t, dict) else {}
            for k, v in p.items():
                if v is None:
                    t.pop(k, None)
                else:
                    t[k] = merge(t.get(k), v)
            return t

        return merge(target, patch)
    if "json-patch" in content_type:
        return jsonpatch.apply_patch(target, patch)
    raise UnsupportedPatch("not yet")
