"""Loading manifests: files and directories, YAML and JSON, lists, and what goes wrong."""

from __future__ import annotations

import json
import pathlib

import pytest

from osm.model import manifest

NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n"
ACCOUNT = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: %s, namespace: shop}\n"


def names(result: manifest.LoadResult) -> list[str]:
    return [loaded.resource.name for loaded in result.objects]


def messages(result: manifest.LoadResult) -> list[str]:
    return [str(p) for p in result.problems]


def test_a_directory_is_read_recursively_in_name_order(tmp_path: pathlib.Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "deep").mkdir()
    (tmp_path / "a.yaml").write_text(NAMESPACE % "a")
    (tmp_path / "b" / "c.yml").write_text(NAMESPACE % "c")
    (tmp_path / "b" / "deep" / "d.json").write_text(
        json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "d"}})
    )
    (tmp_path / "b" / "notes.txt").write_text("kind: not a manifest")
    (tmp_path / "b" / "README.md").write_text("# not a manifest")

    result = manifest.load_paths([tmp_path])

    assert result.problems == []
    assert names(result) == ["a", "c", "d"]
    assert [pathlib.Path(o.source).name for o in result.objects] == ["a.yaml", "c.yml", "d.json"]


def test_a_file_given_by_name_is_read_whatever_its_suffix(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "manifest.txt"
    path.write_text(NAMESPACE % "shop")
    assert names(manifest.load_paths([path])) == ["shop"]


def test_a_directory_without_manifests_is_a_problem(tmp_path: pathlib.Path) -> None:
    result = manifest.load_paths([tmp_path])
    assert messages(result) == [f"{tmp_path}: no .yaml, .yml, .json files in this directory"]


def test_a_missing_file_is_a_problem(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = manifest.load_paths([missing, tmp_path / "also-missing"])
    assert messages(result) == [
        f"{missing}: no such file or directory",
        f"{tmp_path / 'also-missing'}: no such file or directory",
    ]


def test_an_unreadable_file_is_a_problem_and_the_others_still_load(
    tmp_path: pathlib.Path,
) -> None:
    (tmp_path / "a-binary.yaml").write_bytes(b"\xff\xfe\x00kind")
    (tmp_path / "b.yaml").write_text(NAMESPACE % "shop")
    result = manifest.load_paths([tmp_path])
    assert names(result) == ["shop"]
    [problem] = result.problems
    assert problem.source == str(tmp_path / "a-binary.yaml")
    assert problem.message.startswith("cannot read: 'utf-8' codec can't decode byte 0xff")


def test_a_file_that_is_a_directory_entry_but_unreadable_is_a_problem(
    tmp_path: pathlib.Path,
) -> None:
    link = tmp_path / "dangling.yaml"
    link.symlink_to(tmp_path / "gone.yaml")
    result = manifest.load_paths([link])
    assert messages(result) == [f"{link}: no such file or directory"]


def test_a_list_stands_for_its_items() -> None:
    text = """
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: shop}}
- {apiVersion: v1, kind: Service, metadata: {name: web, namespace: shop}, spec: {ports: []}}
"""
    result = manifest.load_text(text, source="list.yaml")
    assert names(result) == ["shop"]
    assert messages(result) == [
        "list.yaml (document 1): Service shop/web: items[1].spec.ports: "
        "a Service needs at least one port"
    ]


def test_json_text_is_one_object_or_a_list_of_documents() -> None:
    one = json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}})
    assert names(manifest.load_text(one)) == ["a"]
    many = json.dumps(
        [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}},
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "B"}},
        ]
    )
    result = manifest.load_text(many, source="many.json")
    assert names(result) == ["a"]
    assert [(p.document, p.path) for p in result.problems] == [(1, "metadata.name")]


def test_invalid_json_is_reported_with_its_line_and_column() -> None:
    result = manifest.load_text('{\n  "kind": "Namespace",\n  oops\n}', source="bad.json")
    assert messages(result) == [
        "bad.json (document 1): invalid JSON at line 3, column 3: "
        "Expecting property name enclosed in double quotes"
    ]


def test_yaml_in_flow_style_is_not_mistaken_for_json() -> None:
    result = manifest.load_text("{apiVersion: v1, kind: Namespace, metadata: {name: shop}}")
    assert result.problems == []
    assert names(result) == ["shop"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            NAMESPACE % "a" + "---\nkind: Namespace\nmetadata: {name: [b}\n",
            "x.yaml (document 2): invalid YAML at line 6, column 20: "
            "expected ',' or ']', but got '}'",
            id="a YAML syntax error names its line, column and document",
        ),
        pytest.param(
            "kind: Namespace\n  name: shop\n",
            "x.yaml (document 1): invalid YAML at line 2, column 7: "
            "mapping values are not allowed here",
            id="a bad indentation is a YAML syntax error",
        ),
        pytest.param(
            "kind: Namespace\nmetadata:\n\tname: shop\n",
            "x.yaml (document 1): invalid YAML at line 3, column 1: "
            "found character '\\t' that cannot start any token",
            id="a tab is a YAML syntax error",
        ),
    ],
)
def test_invalid_yaml_is_reported_where_it_is(text: str, expected: str) -> None:
    result = manifest.load_text(text, source="x.yaml")
    assert messages(result)[-1] == expected


def test_objects_before_a_yaml_syntax_error_still_load() -> None:
    result = manifest.load_text(NAMESPACE % "a" + "---\nkind: [\n", source="x.yaml")
    assert names(result) == ["a"]
    assert len(result.errors) == 1


def test_empty_documents_are_skipped_but_keep_their_number() -> None:
    text = "---\n---\n# only a comment\n---\n" + NAMESPACE % "shop" + "---\n" + NAMESPACE % "Bad"
    result = manifest.load_text(text, source="x.yaml")
    assert [(o.resource.name, o.document) for o in result.objects] == [("shop", 2)]
    assert [p.document for p in result.problems] == [3]


def test_the_same_object_in_two_files_is_an_error_and_the_first_is_kept(
    tmp_path: pathlib.Path,
) -> None:
    first, second = tmp_path / "1.yaml", tmp_path / "2.yaml"
    first.write_text(ACCOUNT % "web")
    second.write_text(ACCOUNT % "other" + "---\n" + ACCOUNT % "web")
    result = manifest.load_paths([tmp_path])
    assert [(o.source, o.document) for o in result.objects] == [(str(first), 0), (str(second), 0)]
    assert messages(result) == [
        f"{second} (document 2): ServiceAccount shop/web: "
        f"defined more than once; first in {first} document 1"
    ]


def test_the_same_object_twice_in_one_text_is_an_error() -> None:
    result = manifest.load_text(ACCOUNT % "web" + "---\n" + ACCOUNT % "web", source="<stdin>")
    assert names(result) == ["web"]
    assert messages(result) == [
        "<stdin> (document 2): ServiceAccount shop/web: defined more than once; "
        "first in <stdin> document 1"
    ]


def test_a_default_namespace_applies_to_objects_without_one() -> None:
    text = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: web}\n"
    result = manifest.load_text(text, default_namespace="team")
    assert [o.resource.namespace for o in result.objects] == ["team"]


def test_decoded_objects_are_validated_one_document_each() -> None:
    result = manifest.load_objects(
        [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
            {"apiVersion": "v1", "kind": "Nope", "metadata": {"name": "x"}},
        ],
        source="request",
    )
    assert names(result) == ["shop"]
    assert [(p.source, p.document, p.path) for p in result.problems] == [
        ("request", 2, "kind"),
        ("request", 1, ""),
    ]


def test_reference_warnings_are_located_by_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "split.yaml"
    path.write_text(
        NAMESPACE % "shop" + "---\napiVersion: split.smi-spec.io/v1alpha2\nkind: TrafficSplit\n"
        "metadata: {name: s, namespace: shop}\n"
        "spec: {service: web, backends: [{service: web, weight: 1}]}\n"
    )
    result = manifest.load_paths([path])
    warnings = manifest.reference_warnings(result)
    assert [str(w) for w in warnings] == [
        f"{path} (document 2): warning: TrafficSplit shop/s: spec.service: "
        'Service "shop/web" is not defined in these files',
        f"{path} (document 2): warning: TrafficSplit shop/s: spec.backends[0].service: "
        'Service "shop/web" is not defined in these files',
    ]
