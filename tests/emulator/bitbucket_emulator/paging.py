"""Bitbucket's pagination envelope (page, pagelen, next, previous) and partial responses (fields=)."""

import copy
import urllib.parse

MAX_PAGELEN = 100


class ParameterError(ValueError):
    """A bad page, pagelen or similar parameter; the message goes into a 400 error."""


def _positive_int(request, name, default, message=None):
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ParameterError(message or "Invalid %s: %r is not a number" % (name, raw)) from None
    if value < 1:
        raise ParameterError(message or "Invalid %s: must be 1 or more" % name)
    return value


def _page_url(request, page):
    """The request's own URL with page replaced, so next/previous echo every other parameter."""
    pairs = []
    replaced = False
    for key, value in request.args.items(multi=True):
        if key == "page":
            if not replaced:
                pairs.append(("page", str(page)))
                replaced = True
            continue
        pairs.append((key, value))
    if not replaced:
        pairs.append(("page", str(page)))
    return request.base_url + "?" + urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote)


def paginate(request, items, default_pagelen=10):
    """Return the envelope for the requested page of items (a list)."""
    pagelen = _positive_int(request, "pagelen", default_pagelen)
    if pagelen > MAX_PAGELEN:
        raise ParameterError("Invalid pagelen: the maximum is %d" % MAX_PAGELEN)
    # Bitbucket answers a bad page (page=2/ from a client bug) with a bare 400 "Invalid page"
    # (a 55-byte body in atlassian-python-api#801).
    page = _positive_int(request, "page", 1, message="Invalid page")
    start = (page - 1) * pagelen
    envelope = {"size": len(items), "page": page, "pagelen": pagelen}
    if start + pagelen < len(items):
        envelope["next"] = _page_url(request, page + 1)
    if page > 1:
        envelope["previous"] = _page_url(request, page - 1)
    envelope["values"] = items[start:start + pagelen]
    return envelope


# --- fields= ------------------------------------------------------------------------------


def _include(source, target, parts):
    """Copy the path parts from source into target (dicts, and lists walked element by element)."""
    if isinstance(source, list):
        for index, element in enumerate(source):
            if isinstance(element, (dict, list)) and index < len(target):
                _include(element, target[index], parts)
        return
    if not isinstance(source, dict):
        return
    head, rest = parts[0], parts[1:]
    for key in (list(source) if head == "*" else [head]):
        if key not in source:
            continue
        value = source[key]
        if not rest or not isinstance(value, (dict, list)):
            if not rest:
                target[key] = copy.deepcopy(value)
            continue
        if key not in target or not isinstance(target[key], type(value)):
            target[key] = [type(element)() if isinstance(element, (dict, list)) else element for element in value] if isinstance(value, list) else {}
        _include(value, target[key], rest)


def _exclude(target, parts):
    if isinstance(target, list):
        for element in target:
            _exclude(element, parts)
        return
    if not isinstance(target, dict):
        return
    head, rest = parts[0], parts[1:]
    for key in (list(target) if head == "*" else [head]):
        if key not in target:
            continue
        if rest:
            _exclude(target[key], rest)
        else:
            del target[key]


def apply_fields(document, spec):
    """Apply a fields= spec: "-a" removes, "+a" adds, a bare "a" switches to a whitelist.

    Specs apply in order, so "-*,+slug" works. In whitelist mode only the named paths remain,
    as on Bitbucket: ask for "next" too (fields=next,values.slug) to keep paginating.
    """
    if not spec:
        return document
    # Names are not trimmed: an unencoded "+" arrives as a space, and Bitbucket's documentation says
    # " foo" then matches no field (so a forgotten %2B shows up here as it does on Bitbucket).
    specs = [item for item in spec.split(",") if item.strip()]
    whitelist = any(item[0] not in "+-" for item in specs)
    result = {} if whitelist else copy.deepcopy(document)
    for item in specs:
        if item[0] == "-":
            _exclude(result, item[1:].split("."))
        else:
            path = item[1:] if item[0] == "+" else item
            _include(document, result, path.split("."))
    return result


# --- Data Center: start/limit ------------------------------------------------------------------

DC_DEFAULT_LIMIT = 25


def _int_param(request, name, default, minimum):
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ParameterError("Invalid %s: %r is not a number." % (name, raw)) from None
    if value < minimum:
        raise ParameterError("Invalid %s: it must be %d or more." % (name, minimum))
    return value


def paginate_start_limit(request, items, max_limit, default_limit=DC_DEFAULT_LIMIT):
    """Data Center's page of items: a larger limit is capped to the server's maximum, as Data Center does;
    size counts the values on this page; nextPageStart only while isLastPage is false."""
    start = _int_param(request, "start", 0, 0)
    limit = min(_int_param(request, "limit", default_limit, 1), max_limit)
    values = items[start:start + limit]
    last = start + limit >= len(items)
    page = {"size": len(values), "limit": limit, "isLastPage": last, "start": start, "values": values}
    if not last:
        page["nextPageStart"] = start + limit
    return page
