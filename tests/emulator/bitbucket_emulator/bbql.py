"""Bitbucket's query language (the q= parameter) and the sort= parameter, over JSON objects.

Grammar (keywords are case-insensitive):
    expr       := and_expr ("OR" and_expr)*
    and_expr   := primary ("AND" primary)*
    primary    := "(" expr ")" | FIELD OPERATOR value | FIELD ["NOT"] "IN" list
    list       := "(" value ("," value)* ")"
    value      := "string" | number | true | false | null | unquoted ISO-8601 datetime
"""

import datetime
import re

# Field types: "string", "bool", "number", "datetime".
_TOKEN_RE = re.compile(
    r"""\s*(?:
        (?P<lparen>\() | (?P<rparen>\)) | (?P<comma>,) |
        (?P<op>!=|!~|<=|>=|=|~|<|>) |
        (?P<string>"(?:[^"\\]|\\.)*") |
        (?P<datetime>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?(?![\w.:-])) |
        (?P<number>-?\d+(?:\.\d+)?(?![\w.])) |
        (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)
_UTC = datetime.timezone.utc


class QueryError(ValueError):
    """An invalid q or sort parameter; the message is shown in the 400 error."""


def parse_datetime(text):
    """Parse an ISO-8601 date or datetime; no offset means UTC. ValueError for impossible dates (2015-02-30)."""
    text = text.replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", text):
        text = text[:-2] + ":" + text[-2:]
    value = datetime.datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=_UTC)


def _tokenize(query):
    tokens = []
    position = 0
    while position < len(query):
        if query[position:].strip() == "":
            break
        match = _TOKEN_RE.match(query, position)
        if match is None:
            start = len(query) - len(query[position:].lstrip())
            raise QueryError("Invalid query: parse error at position %d: unexpected character %r" % (start, query[start]))
        kind = match.lastgroup
        tokens.append((kind, match.group(kind), match.start(kind)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, query, fields):
        self.query = query
        self.fields = fields
        self.tokens = _tokenize(query)
        self.index = 0

    def _peek(self):
        return self.tokens[self.index] if self.index < len(self.tokens) else (None, None, len(self.query))

    def _error(self, expected):
        kind, text, position = self._peek()
        found = "end of query" if kind is None else repr(text)
        return QueryError("Invalid query: parse error at position %d: expected %s, found %s" % (position, expected, found))

    def _keyword(self, word):
        kind, text, _pos = self._peek()
        if kind == "word" and text.upper() == word:
            self.index += 1
            return True
        return False

    def parse(self):
        node = self._or()
        if self.index != len(self.tokens):
            raise self._error("AND, OR or the end of the query")
        return node

    def _or(self):
        nodes = [self._and()]
        while self._keyword("OR"):
            nodes.append(self._and())
        return nodes[0] if len(nodes) == 1 else ("or", nodes)

    def _and(self):
        nodes = [self._primary()]
        while self._keyword("AND"):
            nodes.append(self._primary())
        return nodes[0] if len(nodes) == 1 else ("and", nodes)

    def _primary(self):
        kind, text, _pos = self._peek()
        if kind == "lparen":
            self.index += 1
            node = self._or()
            if self._peek()[0] != "rparen":
                raise self._error("')'")
            self.index += 1
            return node
        if kind != "word" or text.upper() in ("AND", "OR") or text.lower() in ("true", "false", "null"):
            raise self._error("a field name")
        self.index += 1
        if text.startswith("values."):
            text = text[len("values."):]
        if text not in self.fields:
            raise QueryError("Invalid field name: %s" % text)
        negated = self._keyword("NOT")
        if self._keyword("IN"):
            return ("in", text, self.fields[text], negated, self._list(text, self.fields[text]))
        if negated:
            raise self._error("IN")
        kind, operator, _pos = self._peek()
        if kind != "op":
            raise self._error("an operator")
        self.index += 1
        value = self._value(text, self.fields[text], operator)
        return ("cmp", text, self.fields[text], operator, value)

    def _list(self, field, field_type):
        """The ("a", "b") list after IN or NOT IN."""
        if self._peek()[0] != "lparen":
            raise self._error("'(' to start the list")
        self.index += 1
        values = [self._value(field, field_type, "=")]
        while self._peek()[0] == "comma":
            self.index += 1
            values.append(self._value(field, field_type, "="))
        if self._peek()[0] != "rparen":
            raise self._error("',' or ')'")
        self.index += 1
        return values

    def _value(self, field, field_type, operator):
        kind, text, _pos = self._peek()
        if kind is None or kind in ("lparen", "rparen", "op", "comma"):
            raise self._error("a value")
        self.index += 1
        if kind == "word":
            literal = {"true": True, "false": False, "null": None}.get(text.lower(), self)
            if literal is self:
                raise QueryError("Invalid query: %r is not a value (strings must be in double quotes)" % text)
            value_type = "null" if literal is None else "bool"
        elif kind == "string":
            literal = re.sub(r"\\(.)", r"\1", text[1:-1])
            value_type = "string"
        elif kind == "number":
            literal = float(text) if "." in text else int(text)
            value_type = "number"
        else:
            try:
                literal = parse_datetime(text)
            except ValueError:
                raise QueryError("Invalid query: %s is not a valid date or time" % text) from None
            value_type = "datetime"
        if field_type == "datetime" and value_type == "string":
            try:
                literal, value_type = parse_datetime(literal), "datetime"
            except ValueError:
                pass
        if value_type != "null" and value_type != field_type:
            raise QueryError("Invalid query: %s is a %s field and cannot be compared with %s" % (field, field_type, text))
        if operator in ("~", "!~") and field_type != "string":
            raise QueryError("Invalid query: the %s operator only works on text fields, not on %s" % (operator, field))
        if value_type == "null" and operator not in ("=", "!="):
            raise QueryError("Invalid query: null can only be compared with = or !=")
        return literal


def lookup(obj, path):
    """The value at a dotted path of a JSON object, or None."""
    for part in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _compare(actual, operator, expected, field_type):
    if field_type == "datetime" and isinstance(actual, str):
        actual = parse_datetime(actual)
    if operator == "=":
        return actual == expected
    if operator == "!=":
        return actual != expected
    if operator in ("~", "!~"):
        contains = actual is not None and str(expected).lower() in str(actual).lower()
        return contains if operator == "~" else not contains
    if actual is None or expected is None:
        return False
    try:
        return {"<": actual < expected, ">": actual > expected, "<=": actual <= expected, ">=": actual >= expected}[operator]
    except TypeError:
        return False


def _evaluate(node, obj):
    if node[0] == "and":
        return all(_evaluate(child, obj) for child in node[1])
    if node[0] == "or":
        return any(_evaluate(child, obj) for child in node[1])
    if node[0] == "in":
        _in, path, field_type, negated, values = node
        actual = lookup(obj, path)
        found = any(_compare(actual, "=", value, field_type) for value in values)
        return found != negated
    _cmp, path, field_type, operator, expected = node
    return _compare(lookup(obj, path), operator, expected, field_type)


def compile_query(query, fields):
    """Parse q against the allowed fields ({name: type}); returns a predicate over JSON objects."""
    if not query or not query.strip():
        return lambda _obj: True
    tree = _Parser(query, fields).parse()
    return lambda obj: _evaluate(tree, obj)


def natural_key(text):
    """Sort key for natural ordering ("v1.9" before "v1.10")."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in re.split(r"(\d+)", text or "") if part)


def sort_objects(objects, sort, fields, natural=()):
    """Sort JSON objects by one field ("-field" for descending); None values go last."""
    if not sort:
        return list(objects)
    descending = sort.startswith("-")
    field = sort[1:] if descending else sort
    if field.startswith("values."):
        field = field[len("values."):]
    if field not in fields:
        raise QueryError("Invalid sort field: %s" % field)
    field_type = fields[field]

    def key(obj):
        value = lookup(obj, field)
        if value is None:
            return (1, ())
        if field in natural:
            return (0, natural_key(value))
        if field_type == "datetime" and isinstance(value, str):
            return (0, parse_datetime(value))
        if field_type == "string":
            return (0, value.lower())
        return (0, value)

    present = [obj for obj in objects if lookup(obj, field) is not None]
    missing = [obj for obj in objects if lookup(obj, field) is None]
    return sorted(present, key=key, reverse=descending) + missing
