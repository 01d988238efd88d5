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
