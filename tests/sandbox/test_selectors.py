"""Label and field selectors: the grammar of the real API server, without any server."""
from typing import Any

import pytest

from linepool.sandbox.selectors import FieldSelector, LabelSelector, ObjectSelector, SelectorError

LABELS = {'tier': 'gold', 'region': 'eu', 'shard': '3'}


@pytest.mark.parametrize(('selector', 'matches'), [
    ('', True),
    ('tier=gold', True),
    ('tier==gold', True),
    ('tier = gold', True),
    ('tier=silver', False),
    ('tier!=silver', True),
    ('absent!=x', True),  # like the real server: inequality selects objects without the key
    ('tier in (gold, silver)', True),
    ('tier in (silver)', False),
    ('tier notin (silver)', True),
    ('absent notin (x)', True),
    ('tier', True),
    ('absent', False),
    ('!absent', True),
    ('!tier', False),
    ('shard>2', True),
    ('shard<3', False),
    ('tier=gold,region in (eu,us),!absent', True),
    ('tier=gold,region=us', False),
    ('example.com/team=', False),
])
def test_label_selectors(selector: str, matches: bool) -> None:
    assert LabelSelector.parse(selector).matches(LABELS) is matches


@pytest.mark.parametrize('selector', ['a in (b', 'a)', '=b', 'a b', 'a,,b', 'a in (b c)', 'a=b=c'])
def test_malformed_label_selectors_are_rejected(selector: str) -> None:
    with pytest.raises(SelectorError):
        LabelSelector.parse(selector)


def test_label_selectors_treat_missing_labels_as_empty() -> None:
    assert LabelSelector.parse('!tier').matches(None)
    assert not LabelSelector.parse('tier').matches(None)


OBJ: dict[str, Any] = {
    'metadata': {'name': 'p1', 'namespace': 'default', 'labels': {'tier': 'gold'}},
    'spec': {'paused': True},
}


@pytest.mark.parametrize(('selector', 'matches'), [
    ('metadata.name=p1', True),
    ('metadata.name==p1', True),
    ('metadata.name!=p1', False),
    ('metadata.namespace=default,metadata.name=p1', True),
    ('metadata.namespace=other', False),
    ('spec.paused=true', True),
    ('spec.missing=', True),
])
def test_field_selectors(selector: str, matches: bool) -> None:
    assert FieldSelector.parse(selector).matches(OBJ) is matches


def test_malformed_field_selectors_are_rejected() -> None:
    with pytest.raises(SelectorError):
        FieldSelector.parse('metadata.name')


def test_object_selector_combines_both() -> None:
    assert ObjectSelector.parse('tier=gold', 'metadata.name=p1').matches(OBJ)
    assert not ObjectSelector.parse('tier=gold', 'metadata.name=p2').matches(OBJ)
    assert not ObjectSelector.parse('tier=silver', None).matches(OBJ)
