"""A strict schema of the part of the Gateway API (gateway.networking.k8s.io/v1, standard channel)
that k8s/components/gateway uses, for the offline schema check.

The Gateway API is a set of CustomResourceDefinitions, which kubernetes-validate does not know.
This follows the API reference (https://gateway-api.sigs.k8s.io/reference/spec/) for the fields,
types, enumerations, patterns and limits of Gateway and HTTPRoute that our manifests may use. It
is deliberately narrower than the API: a field outside it fails the check (as an unknown field),
so using a new field means adding it here, from the reference, first.
"""

from __future__ import annotations

import jsonschema

API_VERSION = "gateway.networking.k8s.io/v1"

# Names and hostnames as the API's types define them.
_SECTION_NAME = {
    "type": "string",
    "minLength": 1,
    "maxLength": 253,
    "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
}
_OBJECT_NAME = {"type": "string", "minLength": 1, "maxLength": 253}
_NAMESPACE = {
    "type": "string",
    "minLength": 1,
    "maxLength": 63,
    "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
}
_HOSTNAME = {
    "type": "string",
    "minLength": 1,
    "maxLength": 253,
    "pattern": r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
}
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
_GROUP = {"type": "string", "maxLength": 253}
_KIND = {
    "type": "string",
    "minLength": 1,
    "maxLength": 63,
    "pattern": r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$",
}
_DURATION = {"type": "string", "pattern": r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"}


def _object(properties: dict, required: tuple = ()) -> dict:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


def _array(items: dict, max_items: int, min_items: int = 0) -> dict:
    return {"type": "array", "items": items, "maxItems": max_items, "minItems": min_items}


_METADATA = {
    "type": "object",
    "properties": {
        "name": _OBJECT_NAME,
        "namespace": _NAMESPACE,
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["name"],
    "additionalProperties": False,
}

_SECRET_REF = _object(
    {"group": _GROUP, "kind": _KIND, "name": _OBJECT_NAME, "namespace": _NAMESPACE}, ("name",)
)

_LISTENER = _object(
    {
        "name": _SECTION_NAME,
        "hostname": _HOSTNAME,
        "port": _PORT,
        "protocol": {"type": "string", "enum": ["HTTP", "HTTPS", "TLS", "TCP", "UDP"]},
        "tls": _object(
            {
                "mode": {"type": "string", "enum": ["Terminate", "Passthrough"]},
                "certificateRefs": _array(_SECRET_REF, 64),
                "options": {"type": "object", "additionalProperties": {"type": "string"}},
            }
        ),
        "allowedRoutes": _object(
            {
                "namespaces": _object(
                    {
                        "from": {"type": "string", "enum": ["All", "Selector", "Same"]},
                        "selector": {"type": "object"},
                    }
                ),
                "kinds": _array(_object({"group": _GROUP, "kind": _KIND}, ("kind",)), 8),
            }
        ),
    },
    ("name", "port", "protocol"),
)

GATEWAY = _object(
    {
        "apiVersion": {"const": API_VERSION},
        "kind": {"const": "Gateway"},
        "metadata": _METADATA,
        "spec": _object(
            {
                "gatewayClassName": _OBJECT_NAME,
                "listeners": _array(_LISTENER, 64, min_items=1),
            },
            ("gatewayClassName", "listeners"),
        ),
    },
    ("apiVersion", "kind", "metadata", "spec"),
)

_PATH_MATCH = _object(
    {
        "type": {"type": "string", "enum": ["Exact", "PathPrefix", "RegularExpression"]},
        "value": {"type": "string", "maxLength": 1024, "pattern": "^/"},
    }
)
_HEADER = _object(
    {"name": {"type": "string", "minLength": 1}, "value": {"type": "string"}}, ("name", "value")
)
_HEADER_MODIFIER = _object(
    {
        "set": _array(_HEADER, 16),
        "add": _array(_HEADER, 16),
        "remove": _array({"type": "string"}, 16),
    }
)
_FILTER = _object(
    {
        "type": {
            "type": "string",
            "enum": [
                "RequestHeaderModifier",
                "ResponseHeaderModifier",
                "RequestMirror",
                "RequestRedirect",
                "URLRewrite",
                "ExtensionRef",
            ],
        },
        "requestRedirect": _object(
            {
                "scheme": {"type": "string", "enum": ["http", "https"]},
                "hostname": _HOSTNAME,
                "port": _PORT,
                "statusCode": {"type": "integer", "enum": [301, 302]},
            }
        ),
        "requestHeaderModifier": _HEADER_MODIFIER,
        "responseHeaderModifier": _HEADER_MODIFIER,
    },
    ("type",),
)
_BACKEND_REF = _object(
    {
        "group": _GROUP,
        "kind": _KIND,
        "name": _OBJECT_NAME,
        "namespace": _NAMESPACE,
        "port": _PORT,
        "weight": {"type": "integer", "minimum": 0, "maximum": 1000000},
    },
    ("name",),
)
_RULE = _object(
    {
        "name": _SECTION_NAME,
        "matches": _array(
            _object(
                {
                    "path": _PATH_MATCH,
                    "method": {
                        "type": "string",
                        "enum": [
                            "GET",
                            "HEAD",
                            "POST",
                            "PUT",
                            "DELETE",
                            "CONNECT",
                            "OPTIONS",
                            "TRACE",
                            "PATCH",
                        ],
                    },
                }
            ),
            64,
        ),
        "filters": _array(_FILTER, 16),
        "backendRefs": _array(_BACKEND_REF, 16),
        "timeouts": _object({"request": _DURATION, "backendRequest": _DURATION}),
    }
)

HTTPROUTE = _object(
    {
        "apiVersion": {"const": API_VERSION},
        "kind": {"const": "HTTPRoute"},
        "metadata": _METADATA,
        "spec": _object(
            {
                "parentRefs": _array(
                    _object(
                        {
                            "group": _GROUP,
                            "kind": _KIND,
                            "namespace": _NAMESPACE,
                            "name": _OBJECT_NAME,
                            "sectionName": _SECTION_NAME,
                            "port": _PORT,
                        },
                        ("name",),
                    ),
                    32,
                ),
                "hostnames": _array(_HOSTNAME, 16),
                "rules": _array(_RULE, 16),
            }
        ),
    },
    ("apiVersion", "kind", "metadata", "spec"),
)

SCHEMAS = {"Gateway": GATEWAY, "HTTPRoute": HTTPROUTE}


def is_gateway_api(obj: dict) -> bool:
    return str(obj.get("apiVersion", "")).startswith("gateway.networking.k8s.io/")


def errors(obj: dict) -> list[str]:
    """Every fault of a Gateway API object against this schema, as "path: message"."""
    schema = SCHEMAS.get(obj.get("kind")) if obj.get("apiVersion") == API_VERSION else None
    if schema is None:
        return [
            f"(top level): {obj.get('apiVersion')} {obj.get('kind')} is outside the Gateway API "
            "subset tools/k8s-check/gateway_api.py knows"
        ]
    validator = jsonschema.Draft7Validator(schema)
    found = []
    for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        found.append(f"{path}: {error.message}")
    return found
