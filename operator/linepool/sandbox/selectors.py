"""
Kubernetes label and field selectors: parsing and matching, with no I/O.

The sandbox API server uses these to filter lists and watch-streams by the
``labelSelector`` and ``fieldSelector`` query parameters, the way a real API server does.

Label selectors support the full grammar of ``k8s.io/apimachinery/pkg/labels``:
equality (``a=b``, ``a==b``), inequality (``a!=b``), existence (``a``, ``!a``),
set-based (``a in (x,y)``, ``a notin (x,y)``) and the numeric ``a>1``, ``a<1``.

Field selectors support ``=``, ``==`` and ``!=`` on dotted paths. A real API server
only accepts ``metadata.name`` and ``metadata.namespace`` for custom resources (plus a few
per-kind fields for built-ins, e.g. ``involvedObject.name`` for events); the sandbox
accepts any dotted path and compares its string value (absent fields read as ``""``),
which is a superset of what the real server accepts.
"""
import dataclasses
import enum
import re
from collections.abc import Mapping
from typing import Any


class SelectorError(ValueError):
    """A selector string that a real API server would reject with 400 Bad Request."""


class Operator(enum.Enum):
    EQUALS = '='
    NOT_EQUALS = '!='
    IN = 'in'
    NOT_IN = 'notin'
    EXISTS = 'exists'
    DOES_NOT_EXIST = '!'
    GREATER_THAN = 'gt'
    LESS_THAN = 'lt'


# Label keys: an optional DNS-subdomain prefix with a slash, then a name of at most 63 chars.
# We validate the shape loosely but strictly enough to reject garbage like "a b" or "=x".
_KEY = r'[A-Za-z0-9](?:[-A-Za-z0-9_./]*[A-Za-z0-9])?'
_VALUE = r'(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?'
_NOT_EXISTS_RE = re.compile(rf'^!\s*({_KEY})$')
_SET_RE = re.compile(rf'^({_KEY})\s+(in|notin)\s*\(([^()]*)\)$')
_EQ_RE = re.compile(rf'^({_KEY})\s*(==|!=|=)\s*({_VALUE})$')
_NUM_RE = re.compile(rf'^({_KEY})\s*([<>])\s*(-?\d+)$')
_EXISTS_RE = re.compile(rf'^({_KEY})$')
_VALUE_RE = re.compile(rf'^{_VALUE}$')

# Field selectors: a dotted path, an operator, and any value without commas.
_FIELD_RE = re.compile(r'^([A-Za-z0-9_.\-]+)\s*(==|!=|=)\s*([^,]*)$')


@dataclasses.dataclass(frozen=True)
class Requirement:
    """One comma-separated term of a label selector; all terms must hold (logical AND)."""
    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.operator:
            case Operator.EQUALS | Operator.IN:
                return present and value in self.values
            # Like the real API server: "!=" and "notin" also select objects lacking the key.
            case Operator.NOT_EQUALS | Operator.NOT_IN:
                return not present or value not in self.values
            case Operator.EXISTS:
                return present
            case Operator.DOES_NOT_EXIST:
                return not present
            case Operator.GREATER_THAN | Operator.LESS_THAN:
                # Non-integer label values never match numeric comparisons, as in apimachinery.
                try:
                    actual = int(value) if value is not None else None
                except ValueError:
                    return False
                (limit,) = (int(v) for v in self.values)
                if actual is None:
                    return False
                return actual > limit if self.operator is Operator.GREATER_THAN else actual < limit
        raise AssertionError(f"unhandled operator {self.operator}")  # pragma: no cover


@dataclasses.dataclass(frozen=True)
class LabelSelector:
    """A parsed ``labelSelector``; the empty selector matches everything."""
    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> "LabelSelector":
        if text is None or not text.strip():
            return cls()
        return cls(tuple(_parse_label_requirement(term) for term in _split_terms(text)))

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(requirement.matches(labels) for requirement in self.requirements)


@dataclasses.dataclass(frozen=True)
class FieldRequirement:
    path: tuple[str, ...]
    negated: bool
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        actual = _lookup(obj, self.path)
        return (actual != self.value) if self.negated else (actual == self.value)


@dataclasses.dataclass(frozen=True)
class FieldSelector:
    """A parsed ``fieldSelector``; the empty selector matches everything."""
    requirements: tuple[FieldRequirement, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> "FieldSelector":
        if text is None or not text.strip():
            return cls()
        requirements: list[FieldRequirement] = []
        for term in _split_terms(text):
            match = _FIELD_RE.match(term)
            if match is None:
                raise SelectorError(f"invalid field selector term: {term!r}")
            path, op, value = match.groups()
            requirements.append(FieldRequirement(tuple(path.split('.')), op == '!=', value.strip()))
        return cls(tuple(requirements))

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all(requirement.matches(obj) for requirement in self.requirements)


@dataclasses.dataclass(frozen=True)
class ObjectSelector:
    """Both selectors of one request, as one predicate over whole objects."""
    labels: LabelSelector = LabelSelector()
    fields: FieldSelector = FieldSelector()

    @classmethod
    def parse(cls, label_selector: str | None, field_selector: str | None) -> "ObjectSelector":
        return cls(LabelSelector.parse(label_selector), FieldSelector.parse(field_selector))

    def matches(self, obj: Mapping[str, Any]) -> bool:
        metadata = obj.get('metadata') or {}
        return self.labels.matches(metadata.get('labels')) and self.fields.matches(obj)


def _split_terms(text: str) -> list[str]:
    """Split on top-level commas only: the commas inside ``in (a,b)`` belong to the set."""
    terms: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == '(':
            depth += 1
        elif char == ')':
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unbalanced parentheses in selector: {text!r}")
        if char == ',' and depth == 0:
            terms.append(''.join(current).strip())
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise SelectorError(f"unbalanced parentheses in selector: {text!r}")
    terms.append(''.join(current).strip())
    if any(not term for term in terms):
        raise SelectorError(f"empty term in selector: {text!r}")
    return terms


def _parse_label_requirement(term: str) -> Requirement:
    if match := _NOT_EXISTS_RE.match(term):
        return Requirement(match.group(1), Operator.DOES_NOT_EXIST)
    if match := _SET_RE.match(term):
        key, op, raw_values = match.groups()
        values = frozenset(value.strip() for value in raw_values.split(','))
        if any(not _VALUE_RE.match(value) for value in values):
            raise SelectorError(f"invalid value in label selector term: {term!r}")
        return Requirement(key, Operator.IN if op == 'in' else Operator.NOT_IN, values)
    if match := _EQ_RE.match(term):
        key, op, value = match.groups()
        return Requirement(key, Operator.NOT_EQUALS if op == '!=' else Operator.EQUALS, frozenset({value}))
    if match := _NUM_RE.match(term):
        key, op, value = match.groups()
        return Requirement(key, Operator.GREATER_THAN if op == '>' else Operator.LESS_THAN, frozenset({value}))
    if match := _EXISTS_RE.match(term):
        return Requirement(match.group(1), Operator.EXISTS)
    raise SelectorError(f"invalid label selector term: {term!r}")


def _lookup(obj: Mapping[str, Any], path: tuple[str, ...]) -> str:
    value: Any = obj
    for part in path:
        if not isinstance(value, Mapping):
            return ''
        value = value.get(part)
    if value is None:
        return ''
    # Booleans are rendered the way Go does, e.g. for "spec.unschedulable=true".
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return str(value)
