"""The remote evaluator: an OPA server, queried with ``opa-python-client``.

The OPA server is expected to serve Vigil's signed bundle (``vigil bundle build``); its
revision is read from ``data.system.bundles`` when the server exposes it. Connection
failures, HTTP errors and timeouts raise :class:`EvaluatorError` /
:class:`EvaluationTimeout`, which the decider turns into a reject.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import requests
from opa_client.opa import OpaClient

from engine.decide.evaluators import (
    DECISION_PATH,
    Evaluation,
    EvaluationTimeout,
    Evaluator,
    EvaluatorError,
)
from engine.errors import ConfigError


class RemoteEvaluator(Evaluator):
    """Queries ``POST /v1/data/<path>`` on an OPA server."""

    name = "opa-server"

    def __init__(self, url: str, *, timeout: float = 1.0, bundle_name: str = "vigil") -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"opa_url {url!r} is not an http(s) URL",
                              tip="set VIGIL_OPA_URL like http://127.0.0.1:8181")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        self.url = url
        self.timeout = timeout
        self.bundle_name = bundle_name
        self._client = OpaClient(host=parts.hostname, port=port, ssl=parts.scheme == "https",
                                 timeout=timeout, retries=0)
        self._revision: str | None = None

    @property
    def bundle_revision(self) -> str | None:
        """The revision of the bundle named ``bundle_name`` (as a ``bundles:`` configuration
        names it), or of the server's only bundle (``opa run --bundle PATH`` names it by
        its path)."""
        if self._revision is None:
            try:
                answer = self._client.get_data("system/bundles")
                bundles = answer.get("result") or {}
                found = bundles.get(self.bundle_name)
                if found is None and len(bundles) == 1:
                    found = next(iter(bundles.values()))
                manifest = (found or {}).get("manifest") or {}
                self._revision = manifest.get("revision") or None
            except Exception:  # the revision is informative; a missing one is recorded as None
                self._revision = None
        return self._revision

    def evaluate(self, input_document: dict[str, Any], path: str = DECISION_PATH) -> Evaluation:
        package, _, rule = path.rpartition("/")
        started = time.perf_counter_ns()
        try:
            answer = self._client.query_rule(input_data=input_document, package_path=package,
                                             rule_name=rule, query_params={"metrics": True})
        except requests.Timeout as exc:
            raise EvaluationTimeout(f"OPA at {self.url} did not answer within "
                                    f"{self.timeout} s") from exc
        except requests.HTTPError as exc:
            body = exc.response.text[:300] if exc.response is not None else ""
            raise EvaluatorError(f"OPA at {self.url} answered {exc}: {body}") from exc
        except (requests.RequestException, ValueError) as exc:
            raise EvaluatorError(f"OPA at {self.url} could not be queried: {exc}") from exc
        done = time.perf_counter_ns()
        metrics = {k: int(v) for k, v in (answer.get("metrics") or {}).items()
                   if isinstance(v, (int, float))}
        metrics.setdefault("timer_server_handler_ns", done - started)
        if "result" not in answer:
            return Evaluation(defined=False, value=None, timings_ns=metrics)
        return Evaluation(defined=True, value=answer["result"], timings_ns=metrics)

    def close(self) -> None:
        self._client.close_connection()
