"""A recorded-contract fake of the Azure ML / ARM REST calls Shipway's Azure adapter makes.

This is **not** Azure. It is a small HTTP server on 127.0.0.1 that answers the handful of calls
``shipway/targets/azure.py`` makes with the request and response shapes of the public Azure REST
API reference (learn.microsoft.com/rest/api/azureml and /rest/api/monitor), so the adapter's
requests and parsing are exercised over real HTTP. What it checks like Azure does: the path
shape, ``api-version`` (the one the adapter pins), a bearer token on every management call, the
endpoint key on scoring calls, ``location`` + ``properties`` on a PUT, and that a traffic map
only names existing deployments and sums to 100 (or 0). What it cannot check: RBAC, provisioning
time, networking, real scoring containers (a deployment's predictions come from a Python callable).

Calls and their reference pages:

==========================================================  =====================================
``GET  .../workspaces/{ws}/onlineEndpoints/{ep}``           Online Endpoints - Get
``PUT  .../workspaces/{ws}/onlineEndpoints/{ep}``           Online Endpoints - Create Or Update
                                                            (201 + ``Azure-AsyncOperation``)
``GET  .../onlineEndpoints/{ep}/deployments``               Online Deployments - List
``GET  .../onlineEndpoints/{ep}/deployments/{d}``           Online Deployments - Get
``POST .../onlineEndpoints/{ep}/listKeys``                  Online Endpoints - List Keys
``GET  .../registries/{r}/models/{m}/versions/{v}``         Registry Model Versions - Get
``GET  /subscriptions/{s}/providers/Microsoft.AlertsManagement/alerts``  Alerts - Get All
``POST {scoringUri}`` (+ ``azureml-model-deployment``)      invoking an online endpoint
==========================================================  =====================================
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.support.threads import serve_in_thread

API_VERSION = "2024-10-01"
ALERTS_API_VERSION = "2019-05-05-preview"
_ML = "/providers/Microsoft.MachineLearningServices"
_RG = r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(rf"^{_RG}{_ML}/workspaces/(?P<ws>[^/]+)/onlineEndpoints/(?P<ep>[^/]+)$"), "endpoint-get"),
    ("PUT", re.compile(rf"^{_RG}{_ML}/workspaces/(?P<ws>[^/]+)/onlineEndpoints/(?P<ep>[^/]+)$"), "endpoint-put"),
    ("GET", re.compile(rf"^{_RG}{_ML}/workspaces/(?P<ws>[^/]+)/onlineEndpoints/(?P<ep>[^/]+)/deployments$"),
     "deployments-list"),
    ("GET", re.compile(rf"^{_RG}{_ML}/workspaces/(?P<ws>[^/]+)/onlineEndpoints/(?P<ep>[^/]+)/deployments/"
                       r"(?P<dep>[^/]+)$"), "deployment-get"),
    ("POST", re.compile(rf"^{_RG}{_ML}/workspaces/(?P<ws>[^/]+)/onlineEndpoints/(?P<ep>[^/]+)/listKeys$"),
     "endpoint-listkeys"),
    ("GET", re.compile(rf"^{_RG}{_ML}/registries/(?P<reg>[^/]+)/models/(?P<model>[^/]+)/versions/(?P<v>[^/]+)$"),
     "registry-model-version-get"),
    ("GET", re.compile(r"^/subscriptions/(?P<sub>[^/]+)/providers/Microsoft.AlertsManagement/alerts$"), "alerts-list"),
    ("POST", re.compile(r"^/score/(?P<ep>[^/]+)$"), "score"),
]
# The ARM action each management call needs (what the deploy identity must be granted).
ACTIONS = {
    "endpoint-get": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/read",
    "endpoint-put": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/write",
    "deployments-list": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments/read",
    "deployment-get": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments/read",
    "endpoint-listkeys": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/listKeys/action",
    "registry-model-version-get": "Microsoft.MachineLearningServices/registries/assets/read",
    "alerts-list": "Microsoft.AlertsManagement/alerts/read",
}

Predictor = Callable[[dict[str, Any]], list[Any]]


@dataclass
class FakeDeployment:
    name: str
    model_uri: str
    predict: Predictor
    state: str = "Succeeded"
    broken: bool = False
    capacity: int = 1


@dataclass
class FakeEndpoint:
    name: str
    auth_mode: str = "Key"
    traffic: dict[str, int] = field(default_factory=dict)
    deployments: dict[str, FakeDeployment] = field(default_factory=dict)
    keys: tuple[str, str] = ("primary-key-0123", "secondary-key-4567")
    state: str = "Succeeded"
    location: str = "westeurope"


@dataclass
class Call:
    method: str
    route: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class AzureMLFake:
    """State of the fake: endpoints, registry versions, fired alerts; every call recorded."""

    subscription: str = "00000000-0000-0000-0000-000000000000"
    endpoints: dict[str, FakeEndpoint] = field(default_factory=dict)
    registry_versions: set[tuple[str, str, int]] = field(default_factory=set)  # (registry, model, version)
    fired_alerts: list[str] = field(default_factory=list)  # alert rule ids currently fired
    calls: list[Call] = field(default_factory=list)
    url: str = ""
    on_traffic: Callable[[str, dict[str, int]], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------------ helpers for tests
    def routes_called(self) -> list[str]:
        return [c.route for c in self.calls]

    def actions_used(self) -> set[str]:
        """ARM actions of the management calls made so far (scoring is a data-plane call)."""
        return {ACTIONS[c.route] for c in self.calls if c.route in ACTIONS}

    def scoring_uri(self, endpoint: str) -> str:
        return f"{self.url}/score/{endpoint}"

    # ------------------------------------------------------------------ resources (response bodies)
    def _endpoint_body(self, rg: str, ws: str, ep: FakeEndpoint) -> dict[str, Any]:
        return {
            "id": (f"/subscriptions/{self.subscription}/resourceGroups/{rg}{_ML}/workspaces/{ws}/onlineEndpoints/"
                   f"{ep.name}"),
            "name": ep.name,
            "type": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
            "location": ep.location,
            "kind": "Managed",
            "identity": {"type": "UserAssigned", "userAssignedIdentities": {}},
            "properties": {
                "authMode": ep.auth_mode,
                "description": ep.name,
                "publicNetworkAccess": "Disabled",
                "provisioningState": ep.state,
                "scoringUri": self.scoring_uri(ep.name),
                "swaggerUri": f"{self.url}/swagger/{ep.name}",
                "traffic": dict(ep.traffic),
                "mirrorTraffic": {},
            },
            "systemData": {"createdBy": "fake", "createdByType": "Application"},
        }

    def _deployment_body(self, rg: str, ws: str, ep: FakeEndpoint, dep: FakeDeployment) -> dict[str, Any]:
        return {
            "id": (f"/subscriptions/{self.subscription}/resourceGroups/{rg}{_ML}/workspaces/{ws}/onlineEndpoints/"
                   f"{ep.name}/deployments/{dep.name}"),
            "name": dep.name,
            "type": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments",
            "location": ep.location,
            "kind": "Managed",
            "sku": {"name": "Default", "capacity": dep.capacity},
            "properties": {
                "endpointComputeType": "Managed",
                "model": dep.model_uri,
                "instanceType": "Standard_DS3_v2",
                "provisioningState": dep.state,
            },
        }


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class _Handler(BaseHTTPRequestHandler):
    fake: AzureMLFake

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        return

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        fake = self.fake
        parsed = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return self._send(400, _error("BadRequest", "request body is not JSON"))
        matched = [(r, m) for verb, pattern, r in ROUTES if verb == method and (m := pattern.match(parsed.path))]
        if not matched:
            return self._send(404, _error("NoRegisteredProviderFound", f"no route for {method} {parsed.path}"))
        route, found = matched[0]
        with fake.lock:
            fake.calls.append(Call(method, route, parsed.path, query, dict(self.headers.items()), body))
            args = found.groupdict()
            if route == "score":
                return self._score(args["ep"], body)
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("Bearer ") or len(auth) <= len("Bearer "):
                return self._send(401, _error("AuthenticationFailed", "Authentication failed. The "
                                                                      "'Authorization' header is missing."))
            want = ALERTS_API_VERSION if route == "alerts-list" else API_VERSION
            if query.get("api-version") != want:
                return self._send(400, _error("InvalidApiVersionParameter",
                                              f"The api-version '{query.get('api-version')}' is invalid."))
            if args.get("sub") != fake.subscription:
                return self._send(404, _error("SubscriptionNotFound", f"subscription {args.get('sub')} not found"))
            return getattr(self, "_" + route.replace("-", "_"))(args, body, query)

    def _endpoint(self, args: dict[str, str]) -> FakeEndpoint | None:
        ep = self.fake.endpoints.get(args["ep"])
        if ep is None:
            self._send(404, _error("UserError", f"Could not find online endpoint {args['ep']}."))
        return ep

    def _endpoint_get(self, args: dict[str, str], body: Any, query: dict[str, str]) -> None:
        ep = self._endpoint(args)
        if ep is not None:
            if ep.state in ("Updating", "Creating"):
                ep.state = "Succeeded"  # the async operation finished between polls
            self._send(200, self.fake._endpoint_body(args["rg"], args["ws"], ep))

    def _endpoint_put(self, args: dict[str, str], body: Any, query: dict[str, str]) -> None:
        ep = self._endpoint(args)
        if ep is None:
            return
        if not isinstance(body, dict) or "location" not in body or "properties" not in body:
            return self._send(400, _error("BadRequest", "location and properties are required"))
        props = body["properties"]
        if props.get("authMode") != ep.auth_mode:
            return self._send(400, _error("BadRequest", "authMode cannot be changed"))
        traffic = props.get("traffic") or {}
        unknown = sorted(set(traffic) - set(ep.deployments))
        if unknown:
            return self._send(400, _error("UserError", f"Traffic specified for deployments that do not exist: "
                                                       f"{', '.join(unknown)}"))
        if traffic and sum(int(v) for v in traffic.values()) not in (0, 100):
            return self._send(400, _error("UserError", "Traffic must sum to 0 or 100."))
        ep.traffic = {k: int(v) for k, v in traffic.items()}
        ep.state = "Updating"
        if self.fake.on_traffic is not None:
            self.fake.on_traffic(ep.name, dict(ep.traffic))
        op = (f"{self.fake.url}/subscriptions/{self.fake.subscription}{_ML}/locations/{ep.location}"
              "/mfeOperationsStatus/1")
        self._send(201, self.fake._endpoint_body(args["rg"], args["ws"], ep), {"Azure-AsyncOperation": op})

    def _deployments_list(self, args: dict[str, str], body: Any, query: dict[str, str]) -> None:
        ep = self._endpoint(args)
        if ep is not None:
            self._send(200, {"value": [self.fake._deployment_body(args["rg"], args["ws"], ep, d)
                                       for d in ep.deployments.values()]})

    def _deployment_get(self, args: dict[str, str], body: Any, query: dict[str, str]) -> None:
        ep = self._endpoint(args)
        if ep is None:
            return
        dep = ep.deployments.get(args["dep"])
        if dep is None:
            return self._send(404, _error("UserError", f"Could not find deployment {args['dep']}."))
        self._send(200, self.fake._deployment_body(args["rg"], args["ws"], ep, dep))

    def _endpoint_listkeys(self, args: dict[str, str], body: Any, query: dict[str, str]) -> None:
        ep = self._endpoint(args)
        if ep is None:
            return
        if ep.auth_mode != "Key":
            return self._send(400, _error("UserError", "Keys are only available for key-auth endpoints."))
        self._send(200, {"primaryKey": ep.keys[0], "secondaryKey": ep.keys[1]})

    def _registry_model_version_get(self, args: dict[str, str], body: Any, query: dict[str, str]) -> None:
        key = (args["reg"], args["model"], int(args["v"]) if args["v"].isdigit() else -1)
        if key not in self.fake.registry_versions:
            return self._send(404, _error("UserError", f"Model {args['model']}:{args['v']} not found in registry "
                                                       f"{args['reg']}."))
        self._send(200, {
            "id": f"azureml://registries/{args['reg']}/models/{args['model']}/versions/{args['v']}",
            "name": args["v"],
            "type": "Microsoft.MachineLearningServices/registries/models/versions",
            "properties": {"modelType": "mlflow_model", "provisioningState": "Succeeded", "isArchived": False,
                           "modelUri": f"azureml://registries/{args['reg']}/models/{args['model']}/versions/{args['v']}"},
        })

    def _alerts_list(self, args: dict[str, str], body: Any, query: dict[str, str]) -> None:
        wanted = query.get("alertRule")
        fired = [r for r in self.fake.fired_alerts if wanted is None or r.lower() == wanted.lower()]
        self._send(200, {"value": [{
            "id": f"/subscriptions/{self.fake.subscription}/providers/Microsoft.AlertsManagement/alerts/{i}",
            "name": rule.rsplit("/", 1)[-1],
            "type": "Microsoft.AlertsManagement/alerts",
            "properties": {"essentials": {
                "alertRule": rule, "severity": "Sev1", "signalType": "Metric", "alertState": "New",
                "monitorCondition": "Fired", "targetResourceGroup": query.get("targetResourceGroup", ""),
            }},
        } for i, rule in enumerate(fired)]})

    def _score(self, endpoint: str, body: Any) -> None:
        ep = self.fake.endpoints.get(endpoint)
        if ep is None:
            return self._send(404, {"message": "endpoint not found"})
        auth = self.headers.get("Authorization", "")
        if ep.auth_mode == "Key" and auth not in (f"Bearer {ep.keys[0]}", f"Bearer {ep.keys[1]}"):
            return self._send(401, {"message": "key auth failed"})
        if ep.auth_mode == "AADToken" and (not auth.startswith("Bearer ") or auth in (
                f"Bearer {ep.keys[0]}", f"Bearer {ep.keys[1]}")):
            return self._send(401, {"message": "an Entra ID token for https://ml.azure.com is required"})
        name = self.headers.get("azureml-model-deployment")
        if name is None:
            live = [d for d, pct in sorted(ep.traffic.items(), key=lambda kv: -kv[1]) if pct > 0]
            if not live:
                return self._send(503, {"message": "no deployment receives traffic"})
            name = live[0]
        dep = ep.deployments.get(name)
        if dep is None:
            return self._send(404, {"message": f"deployment {name} not found"})
        if dep.broken:
            return self._send(502, {"message": "upstream error"})
        self._send(200, {"predictions": dep.predict(body)}, {"azureml-model-deployment": dep.name})

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._handle("GET")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")


@contextmanager
def serve(fake: AzureMLFake) -> Iterator[AzureMLFake]:
    """Run ``fake`` on 127.0.0.1 (a free port) for the duration of the block."""
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    serve_in_thread(server)
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
