"""Each check of k8s_check.py fails on the fault planted for it in fixtures/.

The repository's own manifests passing is shown by k8s_check.py itself (tools/k8s-check/run.sh
runs both); these tests show that passing means something.
"""

import sys
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import k8s_check  # noqa: E402

FIXTURES = HERE.parent / "fixtures"


def matching(errors, *fragments):
    return [e for e in errors if all(f in e for f in fragments)]


class Render(unittest.TestCase):
    def test_a_kustomization_naming_a_missing_file_does_not_render(self):
        with self.assertRaises(k8s_check.RenderError) as raised:
            k8s_check.render(FIXTURES / "unrenderable")
        self.assertIn("deployment.yaml", str(raised.exception))

    def test_the_broken_fixture_renders_into_the_stack_namespace(self):
        objects = k8s_check.render(FIXTURES / "broken")
        self.assertEqual(len(objects), 7)
        self.assertEqual({o["metadata"]["namespace"] for o in objects}, {"crowd"})


class Schema(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.errors = k8s_check.schema_errors(k8s_check.render(FIXTURES / "broken"))

    def test_an_unknown_field_is_rejected(self):
        self.assertTrue(matching(self.errors, "Deployment crowd/web", "'replica'"), self.errors)

    def test_a_wrong_type_is_rejected(self):
        self.assertTrue(
            matching(self.errors, "Deployment crowd/worker", "revisionHistoryLimit", "'ten'"),
            self.errors,
        )

    def test_every_supported_version_is_checked(self):
        for version in k8s_check.KUBERNETES_VERSIONS:
            self.assertTrue(matching(self.errors, f"Kubernetes {version} schema", "'replica'"))

    def test_well_formed_objects_pass(self):
        self.assertFalse(matching(self.errors, "Service"), self.errors)


class Consistency(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.errors = k8s_check.consistency_errors(k8s_check.render(FIXTURES / "broken"))

    def test_an_autoscaler_pointing_at_a_missing_deployment(self):
        self.assertTrue(
            matching(
                self.errors,
                "HorizontalPodAutoscaler crowd/api",
                "Deployment api, which does not exist",
            ),
            self.errors,
        )

    def test_a_deployment_without_autoscaler(self):
        self.assertTrue(
            matching(self.errors, "Deployment crowd/worker", "0 HorizontalPodAutoscalers"),
            self.errors,
        )
        self.assertFalse(
            matching(self.errors, "Deployment crowd/web:", "HorizontalPodAutoscalers"), self.errors
        )

    def test_a_service_selector_matching_no_pods(self):
        self.assertTrue(
            matching(self.errors, "Service crowd/web:", "{'app': 'wbe'} matches no pod"),
            self.errors,
        )

    def test_a_disruption_budget_selector_matching_no_pods(self):
        self.assertTrue(
            matching(self.errors, "PodDisruptionBudget crowd/web", "matches no pod"), self.errors
        )

    def test_a_service_target_port_no_container_has(self):
        self.assertTrue(
            matching(self.errors, "Service crowd/web-direct", "targetPort 9090"), self.errors
        )

    def test_a_probe_port_the_container_does_not_have(self):
        self.assertTrue(
            matching(self.errors, "container web", "readinessProbe port metrics"), self.errors
        )

    def test_a_container_without_cpu_request(self):
        self.assertTrue(matching(self.errors, "container web", "no CPU request"), self.errors)
        self.assertFalse(matching(self.errors, "container worker", "no CPU request"), self.errors)

    def test_latest_and_missing_image_tags(self):
        self.assertTrue(
            matching(self.errors, "container web", "example/web:latest uses the tag latest")
        )
        self.assertTrue(matching(self.errors, "container worker", "example/worker has no tag"))

    def test_a_checkov_skip_without_reason(self):
        self.assertTrue(
            matching(self.errors, "Deployment crowd/web", "'CKV_K8S_43' gives no reason"),
            self.errors,
        )
        self.assertEqual(
            k8s_check.dockerfile_skip_errors(FIXTURES / "insecure" / "Dockerfile"),
            ["Dockerfile: checkov skip CKV_DOCKER_2 gives no reason (write ID: reason)"],
        )

    def test_image_tags_that_are_pinned(self):
        for image in (
            "redis:7.4.2",
            "registry.k8s.io/x/y:v0.7.2",
            "localhost:5000/app:1.0",
            "a/b@sha256:00",
        ):
            self.assertIsNone(k8s_check.image_tag_error(image), image)
        self.assertIsNotNone(k8s_check.image_tag_error("localhost:5000/app"))


class References(unittest.TestCase):
    """Faults of fixtures/broken-refs/stack.yaml: references between objects."""

    @classmethod
    def setUpClass(cls):
        cls.objects = k8s_check.render(FIXTURES / "broken-refs")
        cls.errors = k8s_check.consistency_errors(cls.objects)
        cls.secrets = k8s_check.secret_errors(cls.objects)

    def test_an_undefined_variable_in_args(self):
        self.assertTrue(matching(self.errors, "container api", "$(UNDEFINED)"), self.errors)
        self.assertFalse(matching(self.errors, "$(DB_PASSWORD)"), self.errors)
        self.assertFalse(matching(self.errors, "ESCAPED"), self.errors)

    def test_a_missing_config_map(self):
        self.assertTrue(matching(self.errors, "ConfigMap missing-settings"), self.errors)

    def test_probes_and_scrape_annotation_on_the_ops_port(self):
        self.assertTrue(matching(self.errors, "readinessProbe uses port http"), self.errors)
        self.assertFalse(matching(self.errors, "livenessProbe"), self.errors)
        self.assertTrue(matching(self.errors, "prometheus.io/port is 8080"), self.errors)

    def test_network_policy_ports(self):
        self.assertTrue(matching(self.errors, "NetworkPolicy crowd/api", "port 7070"), self.errors)
        self.assertTrue(matching(self.errors, "NetworkPolicy crowd/nobody", "selects no pods"))
        self.assertTrue(
            matching(
                self.errors, "Service crowd/api-metrics", "9090", "admitted by no NetworkPolicy"
            )
        )
        self.assertFalse(matching(self.errors, "Service crowd/api:", "admitted"), self.errors)

    def test_replicas_without_spreading_over_nodes(self):
        self.assertTrue(
            matching(self.errors, "Deployment crowd/api", "topologySpreadConstraints"), self.errors
        )

    def test_secret_keys_and_optional(self):
        self.assertTrue(matching(self.secrets, "crowd-ingest has no key tokn"), self.secrets)
        self.assertTrue(matching(self.secrets, "crowd-admin needs optional: true"), self.secrets)
        self.assertTrue(matching(self.secrets, "env DB_PASSWORD", "Secret db-password is neither"))
        self.assertTrue(matching(self.secrets, "Gateway crowd/web", "Secret other-tls"))

    def test_the_deploy_guide_must_create_the_required_secrets(self):
        errors = k8s_check.secret_doc_errors(self.objects, FIXTURES / "broken-refs" / "deploy.md")
        self.assertEqual(
            errors,
            [
                "deploy.md: no `kubectl create secret` command creates Secret crowd-ingest with token"
            ],
        )

    def test_secret_commands_are_read_over_continued_lines(self):
        text = (
            "kubectl -n crowd create secret generic a --from-literal=token=x\n"
            "kubectl -n crowd create secret generic b \\\n  --from-file=api-keys=f \\\n"
            "  --from-literal=other=y\n"
            "kubectl -n crowd create secret tls c --cert=c.pem --key=k.pem\n"
        )
        self.assertEqual(
            k8s_check.documented_secrets(text),
            {"a": {"token"}, "b": {"api-keys", "other"}, "c": {"tls.crt", "tls.key"}},
        )


class GatewaySchema(unittest.TestCase):
    def test_unknown_fields_and_wrong_enumerations_fail(self):
        errors = k8s_check.schema_errors(k8s_check.render(FIXTURES / "broken-refs"))
        self.assertTrue(matching(errors, "HTTPRoute crowd/misspelt", "'backendRef' was unexpected"))
        self.assertTrue(matching(errors, "HTTPRoute crowd/misspelt", "'Prefix' is not one of"))
        self.assertFalse(matching(errors, "HTTPRoute crowd/plain"), errors)
        self.assertFalse(matching(errors, "Gateway crowd/web"), errors)


class Gateway(unittest.TestCase):
    """Faults of fixtures/broken-refs/gateway.yaml."""

    @classmethod
    def setUpClass(cls):
        cls.errors = k8s_check.gateway_errors(k8s_check.render(FIXTURES / "broken-refs"))

    def test_https_without_certificate(self):
        self.assertTrue(matching(self.errors, "listener https-bare has no certificate"))

    def test_plain_http_may_only_redirect(self):
        self.assertTrue(matching(self.errors, "HTTPRoute crowd/plain", "plain-HTTP"), self.errors)

    def test_parents_and_hostnames(self):
        self.assertTrue(matching(self.errors, "crowd/everything", "Gateway nowhere"))
        self.assertTrue(matching(self.errors, "crowd/everything", "other.example.com"))

    def test_only_public_paths_of_public_ports(self):
        self.assertTrue(matching(self.errors, "rule 0 forwards every path"), self.errors)
        self.assertTrue(matching(self.errors, "path / lets the private path /metrics"))
        self.assertTrue(matching(self.errors, "api-metrics port 9090", "not a public one"))
        self.assertTrue(matching(self.errors, "backend Service missing does not exist"))
        self.assertFalse(matching(self.errors, "crowd/plain", "path"), self.errors)

    def test_a_routed_service_must_not_be_reachable_around_the_gateway(self):
        self.assertTrue(matching(self.errors, "Service api is LoadBalancer"), self.errors)

    def test_private_paths(self):
        private = k8s_check.routes_private_path
        self.assertEqual(private({"type": "PathPrefix", "value": "/"}), "/metrics")
        self.assertEqual(private({"type": "Exact", "value": "/metrics"}), "/metrics")
        self.assertEqual(private({"type": "PathPrefix", "value": "/internal/v1/"}), "/internal/")
        self.assertIsNone(private({"type": "PathPrefix", "value": "/api/v1/"}))
        self.assertIsNone(private({"type": "Exact", "value": "/"}))
        self.assertIsNone(private({"type": "Exact", "value": "/ws/live"}))


class DockerfileFrom(unittest.TestCase):
    def test_external_images_need_a_pinned_tag_and_stages_may_be_chosen_by_argument(self):
        self.assertEqual(
            k8s_check.dockerfile_from_errors(FIXTURES / "dockerfile-stages" / "Dockerfile"),
            [
                "Dockerfile: FROM example/tool: image example/tool has no tag (means latest)",
                "Dockerfile: FROM example/${NODEFAULT}:1.0: a build argument without a default",
            ],
        )
        self.assertEqual(
            k8s_check.dockerfile_from_errors(FIXTURES / "insecure" / "Dockerfile"),
            ["Dockerfile: FROM debian:latest: image debian:latest uses the tag latest"],
        )


class PrometheusRule(unittest.TestCase):
    def test_the_example_rules_name_only_dashboard_metrics(self):
        metrics = HERE.parents[2] / k8s_check.DASHBOARD_METRICS
        self.assertEqual(
            k8s_check.prometheus_rule_errors(HERE.parents[2] / k8s_check.PROMETHEUS_RULE, metrics),
            [],
        )
        self.assertEqual(
            k8s_check.prometheus_rule_errors(FIXTURES / "prometheus-rule" / "rule.yaml", metrics),
            [
                "rule.yaml: Typo uses crowd_camera_people_total, not a dashboard metric",
                "rule.yaml: a rule without alert/record name or expr",
            ],
        )


class Checkov(unittest.TestCase):
    def test_a_privileged_root_container_and_a_root_latest_dockerfile_fail(self):
        passed, report = k8s_check.checkov(
            [FIXTURES / "insecure" / "deployment.yaml", FIXTURES / "insecure" / "Dockerfile"]
        )
        self.assertFalse(passed, report)
        for check in ("CKV_K8S_16", "CKV_K8S_8", "CKV_DOCKER_7", "CKV_DOCKER_3"):
            self.assertIn(f"FAILED {check} ", report)


if __name__ == "__main__":
    unittest.main()
