/* test_metrics.c: server/metrics.c renders valid Prometheus text: counters by path and status,
 * cumulative histogram buckets with sum and count, gauges, escaped model-info labels. */
#include "harness.h"
#include "../../server/metrics.c"

static int has(const char *text, const char *line) { return strstr(text, line) != NULL; }

int main(void) {
    metrics_init();
    metrics_request("/classify", 200, 0.003);
    metrics_request("/classify", 200, 0.03);
    metrics_request("/classify", 503, 0.0001);
    metrics_request("/nope/x", 404, 0.0001);
    metrics_request("/admin/jobs/17", 200, 0.0001);
    metrics_request("/healthz", 200, 0.0002);
    metrics_request("/v2/models/fashion-vit/versions/1/infer", 200, 0.02);
    metrics_request("/v2/models/fashion-vit/infer?x=1", 400, 0.001);
    metrics_request("/v2/models/fashion-vit/ready", 200, 0.0001);
    metrics_request("/v2/models/fashion-vit", 200, 0.0001);
    metrics_request("/v2/foo", 404, 0.0001);
    metrics_build_info("0.1.0-dev+gabc", "abc\"def", "release", 0);
    metrics_observe(MET_BATCH_SIZE, 1);
    metrics_observe(MET_BATCH_SIZE, 3);
    metrics_observe(MET_BATCH_SIZE, 32);
    metrics_observe(MET_BATCH_SIZE, 1000);
    metrics_observe(MET_INFER_SECONDS, 0.003);
    metrics_images(5, 1);
    metrics_images(2, 0);
    metrics_queue_depth(7);
    metrics_model_info("fashion \"vit\"", "ViTForImageClassification", "cpu", "fp32", 224, 10, 32);
    metrics_gauge_set("head_version", "Active head version", 3);
    size_t len = 0;
    char *t = metrics_render(&len);
    CHECK(t && len == strlen(t), "render returns text of its length");
    if (!t) return TEST_SUMMARY();
    CHECK(has(t, "vitd_requests_total{path=\"/classify\",status=\"200\"} 2\n"), "requests counted by path+status");
    CHECK(has(t, "vitd_requests_total{path=\"/classify\",status=\"503\"} 1\n"), "503 counted apart");
    CHECK(has(t, "vitd_requests_total{path=\"other\",status=\"404\"} 2\n"), "unknown path -> other");
    CHECK(has(t, "vitd_requests_total{path=\"/admin/jobs\",status=\"200\"} 1\n"), "path prefix reduced");
    CHECK(has(t, "vitd_batch_size_bucket{le=\"1\"} 1\n"), "bucket le=1");
    CHECK(has(t, "vitd_batch_size_bucket{le=\"4\"} 2\n"), "bucket le=4 cumulative");
    CHECK(has(t, "vitd_batch_size_bucket{le=\"32\"} 3\n"), "bucket le=32 (boundary inclusive)");
    CHECK(has(t, "vitd_batch_size_bucket{le=\"+Inf\"} 4\n"), "+Inf bucket");
    CHECK(has(t, "vitd_batch_size_sum 1036\n") && has(t, "vitd_batch_size_count 4\n"), "sum and count");
    CHECK(has(t, "vitd_inference_duration_seconds_bucket{le=\"0.0025\"} 0\n") &&
          has(t, "vitd_inference_duration_seconds_bucket{le=\"0.005\"} 1\n"), "seconds buckets");
    CHECK(has(t, "# TYPE vitd_request_duration_seconds histogram\n"), "TYPE line");
    CHECK(has(t, "vitd_request_duration_seconds_bucket{path=\"/classify\",le=\"0.0025\"} 1\n") &&
          has(t, "vitd_request_duration_seconds_bucket{path=\"/classify\",le=\"0.005\"} 2\n") &&
          has(t, "vitd_request_duration_seconds_count{path=\"/classify\"} 3\n"), "request seconds by path: /classify's own buckets");
    CHECK(has(t, "vitd_request_duration_seconds_count{path=\"/healthz\"} 1\n") &&
          has(t, "vitd_request_duration_seconds_bucket{path=\"/healthz\",le=\"0.0005\"} 1\n"), "health probes apart from /classify");
    CHECK(has(t, "vitd_requests_total{path=\"/v2/models/{model}/infer\",status=\"200\"} 1\n") &&
          has(t, "vitd_requests_total{path=\"/v2/models/{model}/infer\",status=\"400\"} 1\n") &&
          has(t, "vitd_request_duration_seconds_count{path=\"/v2/models/{model}/infer\"} 2\n"),
          "v2 infer with and without a version: one label, the model name left out");
    CHECK(has(t, "vitd_requests_total{path=\"/v2/models/{model}/ready\",status=\"200\"} 1\n") &&
          has(t, "vitd_requests_total{path=\"/v2/models/{model}\",status=\"200\"} 1\n"), "v2 ready and metadata labels");
    CHECK(has(t, "vitd_request_duration_seconds_count{path=\"other\"} 2\n") && !has(t, "path=\"/v2\",status=\"404\""),
          "unknown paths (and /v2/foo) -> other");
    CHECK(has(t, "vitd_build_info{version=\"0.1.0-dev+gabc\",commit=\"abc\\\"def\",build_type=\"release\",cuda=\"false\"} 1\n"),
          "build info gauge, labels escaped");
    CHECK(!has(t, "vitd_request_duration_seconds_count{path=\"/readyz\"}"), "no series for a path never requested");
    CHECK(has(t, "vitd_images_classified_total 5\n") && has(t, "vitd_images_failed_total 2\n"), "image counters");
    CHECK(has(t, "vitd_queue_depth 7\n"), "queue depth gauge");
    CHECK(has(t, "model=\"fashion \\\"vit\\\"\"") && has(t, "device=\"cpu\"") && has(t, "precision=\"fp32\""), "model info escaped");
    CHECK(has(t, "vitd_head_version 3\n"), "custom gauge");
    /* every non-comment line is `name{labels} value` or `name value` */
    int bad = 0;
    for (char *l = t; *l; ) {
        char *e = strchr(l, '\n');
        if (!e) { bad++; break; }
        if (*l != '#') {
            if (strncmp(l, "vitd_", 5) != 0) bad++;
            char *sp = memrchr(l, ' ', (size_t)(e - l));
            if (!sp || sp + 1 == e) bad++;
        }
        l = e + 1;
    }
    CHECK(bad == 0, "every line well-formed (%d bad)", bad);
    free(t);
    return TEST_SUMMARY();
}
