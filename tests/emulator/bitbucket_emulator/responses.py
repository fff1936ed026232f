"""Response helpers shared by every endpoint: JSON, Bitbucket's error envelope, text and HTML pages."""

import html
import json

from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wrappers import Response as _WerkzeugResponse


class Response(_WerkzeugResponse):
    """A werkzeug Response with usual reason phrases ("404 Not Found", not werkzeug's "404 NOT FOUND"),
    since clients put them into their error messages."""

    def _clean_status(self, value):
        if isinstance(value, int):
            value = "%d %s" % (value, HTTP_STATUS_CODES.get(value, "Unknown"))
        return super()._clean_status(value)


def json_response(body, status=200, headers=None):
    """A JSON response."""
    return Response(json.dumps(body), status=status, content_type="application/json; charset=utf-8", headers=headers)


def error_response(status, message, headers=None, detail=None):
    """A JSON error in Bitbucket's {"type": "error", "error": {"message": ...}} envelope."""
    error = {"message": message}
    if detail is not None:
        error["detail"] = detail
    return json_response({"type": "error", "error": error}, status, headers)


def text_response(body, status=200, headers=None, content_type="text/plain; charset=utf-8"):
    """A plain text response."""
    return Response(body, status=status, content_type=content_type, headers=headers)


def html_response(title, message="", status=200):
    """A minimal HTML page."""
    page = "<!DOCTYPE html>\n<html><head><title>%s</title></head><body><h1>%s</h1><p>%s</p></body></html>\n" % (
        html.escape(title), html.escape(title), html.escape(message))
    return Response(page, status=status, content_type="text/html; charset=utf-8")


def dc_error_response(status, message, exception_name, headers=None):
    """A Data Center error: {"errors": [{"context", "message", "exceptionName"}]}."""
    body = {"errors": [{"context": None, "message": message, "exceptionName": exception_name}]}
    return json_response(body, status, headers)
